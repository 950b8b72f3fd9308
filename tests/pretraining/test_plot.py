"""python -m pretraining.plot RUN: a run's loss and accuracy curves as a PNG,
from metrics.jsonl, with matplotlib as an optional dependency."""

import json
import os
import subprocess
import sys

import pytest

from pretraining import plot
from tests.conftest import REPO_ROOT

RECORDS = [
    {"step": 0, "eval_loss": 6.0, "eval_masked_lm_accuracy": 0.0, "eval_predictions": 10},
    {"step": 1, "loss": 5.9, "masked_lm_accuracy": 0.01, "learning_rate": 0.1},
    {"step": 5, "loss": 5.0, "masked_lm_accuracy": 0.2, "examples_per_second": 9.0},
    {"step": 5, "eval_loss": 5.1, "eval_masked_lm_accuracy": 0.15, "eval_predictions": 10},
]


def _run_dir(tmp_path, records=RECORDS, tail=""):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + tail)
    return str(run)


def _plot_cli(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO_ROOT] + sys.path[1:]))  # (where this test found matplotlib, if it did)
    return subprocess.run([sys.executable, "-m", "pretraining.plot", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def test_read_curves_splits_train_and_eval(tmp_path):
    run = _run_dir(tmp_path, tail='{"step": 9, "loss": 4.')  # a cut last line
    assert plot.read_curves(run) == {
        "train_loss": [(1, 5.9), (5, 5.0)], "train_accuracy": [(1, 0.01), (5, 0.2)],
        "eval_loss": [(0, 6.0), (5, 5.1)], "eval_accuracy": [(0, 0.0), (5, 0.15)]}


def test_read_curves_of_lm_uses_accuracy(tmp_path):
    run = _run_dir(tmp_path, [{"step": 2, "loss": 3.0, "accuracy": 0.5}])
    assert plot.read_curves(run) == {"train_loss": [(2, 3.0)], "train_accuracy": [(2, 0.5)]}


def test_without_matplotlib_one_line_names_the_install(tmp_path, monkeypatch):
    run = _run_dir(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    with pytest.raises(ValueError, match=r"pip install matplotlib"):
        plot.plot(run)


def test_cli_writes_png_or_says_what_to_install(tmp_path):
    run = _run_dir(tmp_path)
    result = _plot_cli(run)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
        assert "pip install matplotlib" in result.stderr
        pytest.skip("matplotlib is not installed: the PNG itself is not checked here "
                    "(pip install matplotlib, or the plot extra)")
    assert result.returncode == 0, result.stderr[-2000:]
    png = os.path.join(run, "curves.png")
    assert result.stdout.strip() == png
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 5000


def test_cli_run_without_metrics_is_one_line(tmp_path):
    result = _plot_cli(str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "has no metrics.jsonl" in result.stderr and "Traceback" not in result.stderr
