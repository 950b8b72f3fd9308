"""Fault injection on a run directory: the trainer never loses a run.

Damaged checkpoint pointers and checkpoints, a second trainer, a refused
resume, a cut `metrics.jsonl`, SIGTERM during an evaluation, a model_dir
that is a file, read-only or full, a non-finite loss, an experiment path that
is a directory or binary, and shards that break the train/eval read. Each case
runs the CLI's `run` (or the `Trainer`) in process through `run_or_exit` and
asserts the exit status, one stderr line naming the path, and that the run
directory is unchanged or resumes to the same weights as an uninterrupted run.
The lock against a real trainer process and its release at exit 75 are
checked in tests/pretraining/test_safety.py's SIGTERM test.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pretraining import cli, metrics_log, preemption, train as train_cli
from pretraining.trainer import Trainer
from tests.conftest import tiny_experiment
from tests.pretraining.test_safety import NanTrainer
from tests.reliability.test_data_faults import record_offsets, snapshot
from tests.reliability.tmpfs import small_tmpfs

STEPS, STOP = 15, 10  # checkpoints every 5 steps


def one_line(capsys, fn, *args, **kwargs):
    """Runs `fn` through `cli.run_or_exit`; asserts exit 2 and one stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        cli.run_or_exit(fn, *args, **kwargs)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def weights(trainer):
    return {v.path: v.numpy() for v in trainer.state.model.weights}


def assert_same_weights(got, expected):
    assert got.keys() == expected.keys() and expected
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def experiment(mlm_data, **changes):
    return tiny_experiment(mlm_data, **{"steps": STEPS, "steps_per_loop": 5,
                                        "checkpoint_every": 5, **changes})


@pytest.fixture(scope="module")
def runs(mlm_data, tmp_path_factory):
    """The weights after STEPS straight, and a run stopped at STOP
    (checkpoints 5 and 10) to copy and damage."""
    root = tmp_path_factory.mktemp("runs")
    trainer = Trainer(experiment(mlm_data), str(root / "run"))
    trainer.train(stop_at=STOP)
    trainer.close()
    shutil.copytree(root / "run", root / "stopped")
    trainer.train()  # on to STEPS: the same as a straight run (test_trainer.py's resume test)
    trainer.close()
    return {"weights": weights(trainer), "stopped": str(root / "stopped")}


@pytest.fixture
def run_copy(runs, tmp_path):
    path = str(tmp_path / "run")
    shutil.copytree(runs["stopped"], path)
    return path


def ckpt(run, step, suffix=".index"):
    return os.path.join(run, "checkpoints", f"ckpt-{step}{suffix}")


def resume(mlm_data, run, runs):
    """Resumes `run` to STEPS; asserts the weights equal the straight run's."""
    trainer = Trainer(experiment(mlm_data), run)
    resumed_from = trainer.resumed_from
    trainer.train()
    trainer.close()
    assert_same_weights(weights(trainer), runs["weights"])
    return resumed_from


def restore(mlm_data, run):
    """Starts a trainer on `run` (restores, trains nothing); its resumed step."""
    trainer = Trainer(experiment(mlm_data), run)
    trainer.close()
    return trainer.resumed_from


# ------------------------------------------------------------ the pointer
@pytest.mark.parametrize("damage", ["missing", "garbled", "names_missing_step"])
def test_pointer_damaged_resumes_from_listing(mlm_data, runs, run_copy, caplog, damage):
    pointer = os.path.join(run_copy, "checkpoints", "checkpoint")
    if damage == "missing":
        os.remove(pointer)
    elif damage == "garbled":
        open(pointer, "wb").write(b"\x00\xff\x13garbage{")
    else:
        open(pointer, "w").write('model_checkpoint_path: "ckpt-600"\n')
    assert restore(mlm_data, run_copy) == STOP  # not scratch: the newest is found
    assert os.path.exists(ckpt(run_copy, 5))  # nothing deleted
    assert f"{pointer} is" in caplog.text or damage == "names_missing_step"
    # The pointer names the checkpoints again, so the manager keeps managing them.
    state = tf.train.get_checkpoint_state(os.path.join(run_copy, "checkpoints"))
    assert state.model_checkpoint_path.endswith(f"ckpt-{STOP}")
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        "ckpt-5", f"ckpt-{STOP}"]


# ------------------------------------------------------------ damaged checkpoints
@pytest.mark.parametrize("damage", ["data_cut", "index_flipped"])
def test_damaged_newest_checkpoint_falls_back(mlm_data, runs, run_copy, caplog, damage):
    """Cut `.data`: resumed to the end, bit-identical to the straight run
    (from ckpt-5, dropout on); flipped `.index` bytes: the restore only."""
    if damage == "data_cut":
        path = ckpt(run_copy, STOP, ".data-00000-of-00001")
        data = open(path, "rb").read()
        open(path, "wb").write(data[:len(data) // 2])
    else:
        path = ckpt(run_copy, STOP)
        data = bytearray(open(path, "rb").read())
        for i in range(0, len(data), 7):
            data[i] ^= 0x5A
        open(path, "wb").write(bytes(data))
    # An orphan of a save that was killed is removed at the start.
    orphan = os.path.join(run_copy, "checkpoints", f"ckpt-{STOP + 5}_temp")
    os.makedirs(orphan)
    open(os.path.join(orphan, "part-00000-of-00001.index"), "wb").write(b"half")
    resumed = (resume if damage == "data_cut" else lambda m, r, _: restore(m, r))
    assert resumed(mlm_data, run_copy, runs) == STOP - 5
    assert f"Skipping checkpoint {ckpt(run_copy, STOP, '')}" in caplog.text
    assert not os.path.exists(orphan)


def test_no_checkpoint_restores_is_refused_unchanged(mlm_data, run_copy, capsys):
    for step in (5, STOP):
        path = ckpt(run_copy, step)
        open(path, "wb").write(open(path, "rb").read()[:40])
    before = snapshot(run_copy)
    line = one_line(capsys, Trainer, experiment(mlm_data), run_copy)
    assert "No checkpoint in" in line and all(
        ckpt(run_copy, s, "") in line for s in (5, STOP)), line
    assert snapshot(run_copy) == before


def test_checkpoint_files_without_index_are_not_overwritten(mlm_data, run_copy, capsys):
    for step in (5, STOP):
        os.remove(ckpt(run_copy, step))
    os.remove(os.path.join(run_copy, "checkpoints", "checkpoint"))
    before = snapshot(run_copy)
    line = one_line(capsys, Trainer, experiment(mlm_data), run_copy)
    assert os.path.join(run_copy, "checkpoints") in line and f"ckpt-{STOP}.data" in line, line
    assert snapshot(run_copy) == before


# ------------------------------------------------------------ the lock
def test_live_lock_refused_stale_lock_taken(mlm_data, run_copy, capsys, caplog):
    lock = os.path.join(run_copy, ".lock")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        open(lock, "w").write(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
        before = snapshot(run_copy)
        line = one_line(capsys, Trainer, experiment(mlm_data), run_copy)
        assert lock in line and f"pid {holder.pid}" in line, line
        assert snapshot(run_copy) == before
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale and taken over; released at close.
    trainer = Trainer(experiment(mlm_data), run_copy)
    assert "stale lock" in caplog.text
    assert json.load(open(lock))["pid"] == os.getpid()
    trainer.close()
    assert not os.path.exists(lock)


# ------------------------------------------------------------ refused resume
def test_refused_resume_changes_nothing(mlm_data, run_copy, capsys):
    """Another architecture: refused against config.json before a restore;
    config.json and data_manifest.json keep the run's (generate would read
    them). Without config.json the checkpoints do not restore: refused too."""
    before = snapshot(run_copy)
    other = experiment(mlm_data)
    other.model.intermediate_size *= 2
    line = one_line(capsys, Trainer, other, run_copy)
    assert "was trained with model.intermediate_size=64 (received 128)" in line, line
    assert snapshot(run_copy) == before
    os.remove(os.path.join(run_copy, "config.json"))
    before = snapshot(run_copy)
    line = one_line(capsys, Trainer, other, run_copy)
    assert ckpt(run_copy, STOP, "") in line and "different model config" in line, line
    assert snapshot(run_copy) == before


# ------------------------------------------------------------ metrics.jsonl
def test_cut_metrics_line_dropped_with_one_warning(mlm_data, run_copy, caplog):
    metrics = os.path.join(run_copy, "metrics.jsonl")
    with open(metrics, "a") as f:
        f.write('{"step": 15, "loss": 3.1')  # a kill mid-write
    trainer = Trainer(experiment(mlm_data), run_copy)
    trainer.close()
    assert [r["step"] for r in trainer.log.records()] == [1, 5, STOP]
    assert caplog.text.count("dropping its cut last line") == 1
    assert open(metrics).read().endswith("\n")  # the next record starts a line


# ------------------------------------------------------------ SIGTERM in an evaluation
class SigtermInEval(Trainer):
    """Sends itself a SIGTERM after the first eval batch after step 0; counts
    eval batches after step 0."""

    batches = 0

    def _dataset(self, data_dir, training):
        dataset = super()._dataset(data_dir, training)
        if training:
            return dataset

        def batches():
            for batch in dataset:
                if int(self.state.step.numpy()) > 0:  # (the step-0 evaluation runs through)
                    type(self).batches += 1
                    if type(self).batches == 1:  # arrives while the first batch is evaluated
                        os.kill(os.getpid(), signal.SIGTERM)
                yield batch
        return batches()


def test_sigterm_during_eval_saves_and_stops(mlm_data, tmp_path):
    """SIGTERM in the evaluation at step 5 (no checkpoint there yet), then in
    the final one: each stops after the batch in hand, saves, raises
    `Preempted` (exit 75); the next run writes summary.json."""
    run = str(tmp_path / "run")
    eval_manifest = json.load(open(os.path.join(mlm_data["eval_dir"], "manifest.json")))
    assert sum(eval_manifest["examples_per_shard"]) > 8  # more than one eval batch
    changes = dict(steps=10, eval_every=5, checkpoint_every=10)
    handler = signal.getsignal(signal.SIGTERM)
    trainer = SigtermInEval(experiment(mlm_data, **changes), run)
    for saved in (5, 10):  # the same trainer goes on (one trace of the train step)
        SigtermInEval.batches = 0
        with pytest.raises(preemption.Preempted, match=f"checkpoint saved at step {saved}"):
            trainer.train()
        assert SigtermInEval.batches == 1  # stopped between batches, not at the end
        assert os.path.exists(ckpt(run, saved))
        assert not os.path.exists(os.path.join(run, "summary.json"))
    trainer.close()
    assert signal.getsignal(signal.SIGTERM) == handler  # put back after each train()
    trainer = Trainer(experiment(mlm_data, **changes), run)
    assert trainer.resumed_from == 10
    summary = trainer.train()
    trainer.close()
    on_disk = json.load(open(os.path.join(run, "summary.json")))
    assert on_disk["step"] == 10 and on_disk["eval_predictions"] == summary["eval_predictions"]


# ------------------------------------------------------------ clear errors
def test_model_dir_that_is_a_file(mlm_data, tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("keep me")
    line = one_line(capsys, Trainer, experiment(mlm_data), str(path))
    assert str(path) in line and "existing file" in line
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_experiment_path_directory_or_binary(tmp_path, capsys, kind):
    path = tmp_path / "exp"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(bytes(range(256)) * 4)
    line = one_line(capsys, train_cli.run, str(path), str(tmp_path / "run"))
    assert str(path) in line and ("directory" in line if kind == "directory"
                                  else "not UTF-8" in line), line
    assert not (tmp_path / "run").exists()


class NanAtStep7(NanTrainer):
    nan_step = 7


def test_non_finite_loss_exit_2_one_line(mlm_data, tmp_path, capsys):
    run = str(tmp_path / "run")
    trainer = NanAtStep7(experiment(mlm_data, steps=10), run)
    line = one_line(capsys, trainer.train)
    trainer.close()
    assert "Non-finite loss" in line and ckpt(run, 5, "") in line, line


def _du(path):
    return sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(path) for n in ns)


def test_full_disk_during_save_keeps_last_checkpoint(mlm_data, runs, tmp_path, capsys):
    # Room for the stopped run and its metrics, not for one more checkpoint.
    size = (_du(runs["stopped"]) + 64 * 1024) // 4096 * 4096  # (a checkpoint: ~400 KB)
    with small_tmpfs(tmp_path / "small", size) as mount:
        run = str(mount / "run")
        shutil.copytree(runs["stopped"], run)
        trainer = Trainer(experiment(mlm_data), run)
        try:
            line = one_line(capsys, trainer.train)
        finally:
            trainer.close()  # its event files, or the tmpfs stays busy
        checkpoints = os.path.join(run, "checkpoints")
        assert f"Saving checkpoint ckpt-{STEPS} in {checkpoints} failed" in line, line
        assert f"last checkpoint is kept: {ckpt(run, STOP, '')}" in line, line
        assert not os.path.exists(ckpt(run, STEPS, "_temp"))
        reader = tf.train.load_checkpoint(ckpt(run, STOP, ""))  # still restores
        assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == STOP


def test_full_disk_during_a_run_file_write(tmp_path):
    """summary.json, config.json (and metrics.jsonl) on a full disk: one line
    naming the file, no `.tmp` left, the old file kept."""
    with small_tmpfs(tmp_path / "tiny", "8k") as mount:
        path = str(mount / "summary.json")
        metrics_log.write_json_atomic(path, {"step": 1})
        with pytest.raises(ValueError, match=f"Writing {path} failed: .*No space left"):
            metrics_log.write_json_atomic(path, {"step": 2, "pad": "x" * 20000})
        assert os.listdir(mount) == ["summary.json"]
        assert json.load(open(path)) == {"step": 1}


def test_read_only_model_dir(mlm_data, runs, tmp_path, capsys):
    with small_tmpfs(tmp_path / "ro", "1m") as mount:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        line = one_line(capsys, Trainer, experiment(mlm_data), str(mount))
        assert str(mount) in line and "not writable" in line, line


# ------------------------------------------------------------ data met in the loop
def _flip_records(path, first, last):
    offsets, data = record_offsets(path)
    damaged = bytearray(data)
    for i in range(first, last):
        damaged[offsets[i] + 30] ^= 0xFF  # inside the payload: the record's CRC fails
    open(path, "wb").write(bytes(damaged))


@pytest.mark.parametrize("split", ["train", "eval"])
def test_corrupt_shard_in_the_loop_names_it(mlm_data, tmp_path, capsys, split):
    data = dict(mlm_data)
    data[f"{split}_dir"] = str(tmp_path / split)
    shutil.copytree(mlm_data[f"{split}_dir"], data[f"{split}_dir"])
    manifest = json.load(open(os.path.join(data[f"{split}_dir"], "manifest.json")))
    names = manifest["shard_files"]
    for name in names:
        path = os.path.join(data[f"{split}_dir"], name)
        _flip_records(path, 0, len(record_offsets(path)[0]))
    run = str(tmp_path / "run")
    run_fn = (lambda: Trainer(experiment(data), run).train())
    line = one_line(capsys, run_fn)
    assert any(os.path.join(data[f"{split}_dir"], n) in line for n in names), line
    assert "record 0" in line and "corrupted record" in line, line
    if split == "eval":  # found before training starts: the run directory is not made
        assert not os.path.exists(run)
