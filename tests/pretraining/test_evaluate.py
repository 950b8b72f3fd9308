"""`python -m pretraining.evaluate`: any checkpoint of a run on any compatible
records, without training. Its figures are compared with the trainer's own
evaluation of the same weights (a separate path: the distributed eval step
inside `Trainer`); user errors are one line and exit 2."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from pretraining import evaluate
from pretraining.trainer import Trainer
from tests.conftest import REPO_ROOT, tiny_experiment
from tests.reliability.test_data_faults import snapshot

TOLERANCE = 1e-5
# TensorFlow's C++ start-up lines (not ours; TF_CPP_MIN_LOG_LEVEL does not hide all).
TF_CPP_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+\.cc:\d+\]|WARNING: All "
                        r"log messages before absl::InitializeLog)")


@pytest.fixture(scope="module")
def finished(mlm_data, tmp_path_factory):
    """A 10-step run (checkpoints 5 and 10) and the trainer's evaluations of both."""
    run = str(tmp_path_factory.mktemp("evaluate") / "run")
    experiment = tiny_experiment(mlm_data, steps=10, steps_per_loop=5, checkpoint_every=5)
    trainer = Trainer(experiment, run)
    trainer.train(stop_at=5)
    at_5 = trainer.evaluate()
    summary = trainer.train()
    trainer.close()
    return {"run": run, 5: at_5, 10: summary}


def processes(commands: dict) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    running = {name: subprocess.Popen([sys.executable, "-m", "pretraining.evaluate", *args],
                                      cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env)
               for name, args in commands.items()}
    return {name: (p.wait(timeout=300), *p.communicate()) for name, p in running.items()}


def assert_same_figures(got: dict, expected: dict):
    keys = [k for k in expected if k.startswith("eval_")]
    assert {"eval_loss", "eval_masked_lm_accuracy", "eval_perplexity"} <= set(keys)
    for key in keys:
        assert got[key] == pytest.approx(expected[key], rel=TOLERANCE, abs=TOLERANCE), key


def test_cli_evaluates_newest_and_chosen_step_as_the_trainer_did(finished, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(finished["run"], run)
    results = processes({"newest": [f"--model_dir={run}"]})
    code, out, err = results["newest"]
    assert code == 0, err[-3000:]
    newest = json.loads(out.strip().splitlines()[-1])
    assert newest["step"] == 10
    assert_same_figures(newest, finished[10])
    # Another checkpoint, in process (the same code the CLI runs).
    at_5 = evaluate.evaluate(run, step=5)
    assert at_5["step"] == 5
    assert_same_figures(at_5, finished[5])
    assert at_5["eval_loss"] != pytest.approx(newest["eval_loss"], rel=1e-3)
    written = json.load(open(os.path.join(run, evaluate.RESULTS_FILE)))["results"]
    assert [(r["step"], r["eval_loss"]) for r in written] == [
        (5, at_5["eval_loss"]), (10, newest["eval_loss"])]
    # The same pair again replaces its entry.
    evaluate.evaluate(run, step=5)
    assert len(json.load(open(os.path.join(run, evaluate.RESULTS_FILE)))["results"]) == 2


def test_eval_steps_and_another_split(finished, mlm_data):
    """--eval_dir: the train split is compatible records too; --eval_steps caps it."""
    result = evaluate.evaluate(finished["run"], eval_dir=mlm_data["train_dir"], eval_steps=2)
    assert result["batches"] == 2 and result["eval_dir"] == mlm_data["train_dir"]
    assert result["eval_predictions"] <= 2 * 8 * 5
    os.remove(os.path.join(finished["run"], evaluate.RESULTS_FILE))


# make test-all; tests/reliability/test_cli_errors.py probes evaluate's bad flags with every CLI.
@pytest.mark.extended
def test_cli_user_errors_one_line_exit_2(finished, mlm_data, tmp_path):
    from data_pipeline import builder, tasks

    nsp = tmp_path / "nsp"
    builder.build([mlm_data["corpus"]], mlm_data["tokenizer"], str(nsp),
                  task=tasks.TaskConfig(next_sentence=True, max_seq_length=32,
                                        max_predictions_per_seq=5),
                  seed=1, num_shards=1, eval_fraction=0.1)
    empty = tmp_path / "empty"
    empty.mkdir()
    before = snapshot(finished["run"])
    results = processes({
        "step": [f"--model_dir={finished['run']}", "--step=7"],
        "nsp": [f"--model_dir={finished['run']}", f"--eval_dir={nsp / 'eval'}"],
        "not_a_run": [f"--model_dir={empty}"],
    })
    expected = {"step": ["--step=7", "ckpt-7", "5, 10"],
                "nsp": [os.path.join(str(nsp / "eval"), "manifest.json"), "next_sentence=true",
                        "data_manifest.json has next_sentence=false"],
                "not_a_run": [str(empty), "config.json"]}
    for name, (code, out, err) in results.items():
        assert code == 2, (name, err[-3000:])
        lines = [line for line in err.strip().splitlines() if not TF_CPP_LOG.match(line)]
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err[-3000:])
        for text in expected[name]:
            assert text in lines[0], (name, lines[0])
        assert out == ""
    assert snapshot(finished["run"]) == before
