"""Resume that protects the run (issue #21): a second `pretraining.train` on a
run directory is compared with its `config.json` (model and task refused,
the plan refused unless `--allow_changes` names it, a history kept),
`--overwrite` starts again only after every check, warnings for derived
values before step 1, and NSP labels on one side only refused at the start.
Refusals change nothing in the run directory."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import types

import pytest

from data_pipeline import input as data_input
from pretraining import cli, data_checks
from pretraining.trainer import Trainer
from tests.conftest import REPO_ROOT, tiny_experiment
from tests.reliability.test_data_faults import snapshot

STOP, STEPS, PEAK = 5, 10, 0.005  # the run stops at STOP of STEPS; warmup 2 steps


def experiment(mlm_data, **changes):
    out = tiny_experiment(mlm_data, **{"steps": STEPS, "steps_per_loop": 5,
                                       "checkpoint_every": 5, "eval_every": 5, **changes})
    out.optimizer.warmup_steps = 2
    return out


def one_line(capsys, fn, *args, **kwargs):
    with pytest.raises(SystemExit) as exit_info:
        cli.run_or_exit(fn, *args, **kwargs)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def stopped(mlm_data, tmp_path_factory):
    """A run stopped at STOP (ckpt-5) and its experiment as a JSON file."""
    root = tmp_path_factory.mktemp("resume_guard")
    trainer = Trainer(experiment(mlm_data), str(root / "run"))
    trainer.train(stop_at=STOP)
    trainer.close()
    path = root / "experiment.json"
    path.write_text(json.dumps(experiment(mlm_data).to_dict()))
    return {"run": str(root / "run"), "experiment": str(path)}


@pytest.fixture
def run_copy(stopped, tmp_path):
    path = str(tmp_path / "run")
    shutil.copytree(stopped["run"], path)
    return path


def train_processes(commands: dict) -> dict:
    """Runs `python -m pretraining.train` with each argument list at once;
    {name: (exit status, stderr)}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    processes = {name: subprocess.Popen([sys.executable, "-m", "pretraining.train", *args],
                                        cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
                 for name, args in commands.items()}
    return {name: (p.wait(timeout=300), p.communicate()[1]) for name, p in processes.items()}


def error_line(err: str) -> str:
    """The one `error:` line of a refused command (no traceback, nothing else
    from our code on stderr after the start)."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0]


# ------------------------------------------------------------ the CLI refuses
def test_cli_refuses_other_model_other_steps_and_bad_allow(stopped, tmp_path):
    runs = {}
    for name in ("model", "steps", "allow_model", "task_fixed"):
        runs[name] = str(tmp_path / name)
        shutil.copytree(stopped["run"], runs[name])
    before = snapshot(stopped["run"])
    common = [f"--experiment={stopped['experiment']}"]
    results = train_processes({
        "model": common + [f"--model_dir={runs['model']}",
                           "--override=model.num_hidden_layers=3"],
        "steps": common + [f"--model_dir={runs['steps']}", "--override=train.steps=20"],
        "allow_model": common + [f"--model_dir={runs['allow_model']}",
                                 "--allow_changes=model.hidden_size"],
        "task_fixed": common + [f"--model_dir={runs['task_fixed']}",
                                "--override=model.intermediate_size=96",
                                "--allow_changes=train.steps"],
    })
    for name, (code, err) in results.items():
        assert code == 2, (name, err[-3000:])
        line = error_line(err)
        assert snapshot(runs[name]) == before, name  # nothing written, nothing removed
        if name == "model":
            assert "was trained with model.num_hidden_layers=2 (received 3)" in line, line
            assert "--overwrite" in line, line
        elif name == "steps":
            assert "train.steps=10 (received 20)" in line, line
            assert "--allow_changes=train.steps" in line, line
        elif name == "allow_model":
            assert "--allow_changes names model.hidden_size" in line, line
        else:
            assert "model.intermediate_size=" in line and "(received 96)" in line, line


def test_refused_in_process_is_one_line_and_unchanged(mlm_data, run_copy, capsys):
    before = snapshot(run_copy)
    other = experiment(mlm_data, seed=4)
    other.optimizer.learning_rate = 0.01
    line = one_line(capsys, Trainer, other, run_copy)
    assert "optimizer.learning_rate=0.005 (received 0.01)" in line, line
    assert "train.seed=3 (received 4)" in line, line
    assert "--allow_changes=optimizer.learning_rate,train.seed" in line, line
    assert snapshot(run_copy) == before


# ------------------------------------------------------------ allowed changes
def test_allowed_steps_rebuild_the_schedule_and_keep_the_history(mlm_data, run_copy, caplog):
    longer = experiment(mlm_data, steps=20)
    longer.train.log_every = 5  # a free field: logged, no flag needed
    trainer = Trainer(longer, run_copy, allow_changes=["train.steps"])
    # Linear decay from the end of warmup (2) to the new end (20), at step 5;
    # the run's plan ended at 10.
    new_lr = PEAK * (1 - (STOP - 2) / (20 - 2))
    old_lr = PEAK * (1 - (STOP - 2) / (STEPS - 2))
    assert trainer.resumed_from == STOP
    assert float(trainer.state.optimizer.learning_rate) == pytest.approx(new_lr, rel=1e-6)
    assert f"the learning rate is {new_lr:.6g} (the run's plan: {old_lr:.6g})" in caplog.text
    assert "train.steps=20 (the run had 10) (allowed by --allow_changes)" in caplog.text
    assert "train.log_every=5 (the run had 0)" in caplog.text
    history = os.path.join(run_copy, "config_history", f"config-step-{STOP}.json")
    assert json.load(open(history))["train"]["steps"] == STEPS
    assert json.load(open(os.path.join(run_copy, "config.json")))["train"]["steps"] == 20
    summary = trainer.train()
    trainer.close()
    assert summary["step"] == 20
    # The same experiment again: nothing differs, no second history entry.
    trainer = Trainer(longer, run_copy, allow_changes=["train.steps"])
    trainer.close()
    assert os.listdir(os.path.join(run_copy, "config_history")) == [f"config-step-{STOP}.json"]


def test_no_checkpoint_yet_means_nothing_to_protect(mlm_data, tmp_path):
    """config.json without a checkpoint (a run refused or killed before its
    first save): another experiment starts, the old config kept."""
    run = str(tmp_path / "run")
    Trainer(experiment(mlm_data), run).close()
    other = experiment(mlm_data)
    other.model.num_hidden_layers = 1
    Trainer(other, run).close()
    assert json.load(open(os.path.join(run, "config.json")))["model"]["num_hidden_layers"] == 1
    kept = json.load(open(os.path.join(run, "config_history", "config-step-0.json")))
    assert kept["model"]["num_hidden_layers"] == 2


# The CLI variant (make test-all); test_overwrite_deletes_nothing_before_every_check covers
# --overwrite's logic in process, test_cli_refuses_... the CLI's refusals.
@pytest.mark.extended
# ------------------------------------------------------------ --overwrite
def test_overwrite_cli_starts_again(stopped, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(stopped["run"], run)
    code, err = train_processes({"overwrite": [
        f"--experiment={stopped['experiment']}", f"--model_dir={run}", "--overwrite",
        "--override=model.num_hidden_layers=1", "--override=train.steps=2",
        "--override=train.eval_every=0", "--override=train.steps_per_loop=2"]})["overwrite"]
    assert code == 0, err[-3000:]
    assert "--overwrite: deleting the previous run" in err
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["model"]["num_hidden_layers"] == 1 and config["train"]["steps"] == 2
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    assert not os.path.exists(os.path.join(run, "config_history"))
    steps = [r["step"] for r in map(json.loads, open(os.path.join(run, "metrics.jsonl")))]
    assert steps and max(steps) == 2  # the old run's records (step 5) are gone


def test_overwrite_deletes_nothing_before_every_check(mlm_data, run_copy, capsys, tmp_path):
    before = snapshot(run_copy)
    bad = experiment(mlm_data)
    bad.data.eval_dir = str(tmp_path / "no_such_split")
    line = one_line(capsys, Trainer, bad, run_copy, overwrite=True)
    assert "no_such_split" in line, line
    assert snapshot(run_copy) == before
    # A live trainer's lock: refused before anything is deleted.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = os.path.join(run_copy, ".lock")
        open(lock, "w").write(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
        before = snapshot(run_copy)
        line = one_line(capsys, Trainer, experiment(mlm_data), run_copy, overwrite=True)
        assert f"pid {holder.pid}" in line, line
        assert snapshot(run_copy) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


# ------------------------------------------------------------ warnings before step 1
def test_warnings_for_derived_values(mlm_data):
    train = data_input.read_manifest(mlm_data["train_dir"])
    evaluation = data_input.read_manifest(mlm_data["eval_dir"])
    fine = experiment(mlm_data, global_batch_size=evaluation.num_examples)
    assert data_checks.warn_derived(fine, train, evaluation) == []
    batch = next(b for b in range(7, 40) if evaluation.num_examples % b)
    tripped = experiment(mlm_data, eval_every=0, log_every=2, global_batch_size=batch)
    tripped.optimizer.warmup_steps = STEPS
    small = types.SimpleNamespace(num_examples=batch - 1)  # (only the count is read)
    notes = data_checks.warn_derived(tripped, small, evaluation)
    expected = [f"optimizer.warmup_steps={STEPS} >= train.steps={STEPS}",
                "train.eval_every=0 with data.eval_dir set: one evaluation, at the end",
                "train.steps_per_loop=5 is larger than train.log_every=2",
                f"fewer than train.global_batch_size={batch}",
                f"the last eval batch is padded with "
                f"{batch - evaluation.num_examples % batch} empty examples"]
    assert len(notes) == len(expected)
    for note, text in zip(notes, expected):
        assert text in note, (note, text)


def test_trainer_warns_before_writing(mlm_data, tmp_path, caplog):
    tripped = experiment(mlm_data, eval_every=0)
    trainer = Trainer(tripped, str(tmp_path / "run"))
    trainer.close()
    assert "train.eval_every=0 with data.eval_dir set" in caplog.text


# ------------------------------------------------------------ NSP train/eval mismatch
@pytest.fixture(scope="module")
def nsp_data(mlm_data, tmp_path_factory):
    from data_pipeline import builder, tasks

    root = tmp_path_factory.mktemp("nsp")
    builder.build([mlm_data["corpus"]], mlm_data["tokenizer"], str(root),
                  task=tasks.TaskConfig(next_sentence=True, max_seq_length=32,
                                        max_predictions_per_seq=5),
                  seed=1, num_shards=1, eval_fraction=0.1)
    return {"train_dir": str(root / "train"), "eval_dir": str(root / "eval"),
            "vocab_size": mlm_data["vocab_size"]}


@pytest.mark.parametrize("nsp_side", ["train", "eval"])
def test_nsp_on_one_side_is_refused_at_start(mlm_data, nsp_data, tmp_path, capsys, nsp_side):
    other = {"train": "eval", "eval": "train"}[nsp_side]
    data = {f"{nsp_side}_dir": nsp_data[f"{nsp_side}_dir"],
            f"{other}_dir": mlm_data[f"{other}_dir"], "vocab_size": mlm_data["vocab_size"]}
    run = str(tmp_path / "run")
    line = one_line(capsys, Trainer, experiment(data), run)
    assert f"{os.path.join(nsp_data[nsp_side + '_dir'], 'manifest.json')} has " \
           "next_sentence=true" in line, line
    assert f"{os.path.join(mlm_data[other + '_dir'], 'manifest.json')} has " \
           "next_sentence=false" in line, line
    assert not os.path.exists(run)
