"""Non-finite steps, SIGTERM and SIGKILL: the run stops or resumes cleanly."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from pretraining import cli, preemption, train
from pretraining.trainer import Trainer
from tests.conftest import REPO_ROOT, tiny_experiment


class NanTrainer(Trainer):
    """Injects a NaN loss at `nan_step` while no data has been skipped yet."""

    nan_step = 12

    def _forward_backward(self, batch, counts):
        sums, grads = super()._forward_backward(batch, counts)
        bad = tf.logical_and(tf.equal(self.state.step, self.nan_step),
                             tf.equal(self.state.data_offset, 0))
        nan = tf.where(bad, tf.constant(np.nan, tf.float32), 1.0)
        sums = dict(sums, loss_sum=sums["loss_sum"] * nan)
        return sums, [g * nan if g is not None else g for g in grads]


def test_nan_stops_and_keeps_last_checkpoint(mlm_data, tmp_path):
    trainer = NanTrainer(tiny_experiment(mlm_data, steps=20, checkpoint_every=5),
                         str(tmp_path))
    with pytest.raises(FloatingPointError, match="between steps 10 and 15"):
        trainer.train()
    assert trainer.state.checkpoint.latest.endswith("ckpt-10")


def test_nan_skip_and_continue(mlm_data, tmp_path):
    experiment = tiny_experiment(mlm_data, steps=20, checkpoint_every=5, max_nan_skips=1)
    trainer = NanTrainer(experiment, str(tmp_path))
    summary = trainer.train()
    assert summary["step"] == 20 and np.isfinite(summary["loss"])
    assert int(trainer.state.nan_skips.numpy()) == 1
    assert int(trainer.state.data_offset.numpy()) == 5  # batches of steps 10..15 skipped


def _cli(experiment_file, model_dir, *flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "pretraining.train", f"--experiment={experiment_file}",
         f"--model_dir={model_dir}", *flags], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(model_dir, proc, timeout=300):
    deadline = time.time() + timeout
    index = os.path.join(model_dir, "checkpoints", "checkpoint")
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(index):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def long_experiment(mlm_data, tmp_path):
    experiment = tiny_experiment(mlm_data, steps=400, steps_per_loop=2, checkpoint_every=2,
                                 log_every=10, keep_checkpoints=2)
    path = tmp_path / "experiment.json"
    path.write_text(experiment.to_json())
    return str(path)


def _final_weights(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    # Most weights are saved under the first path to them, the optimizer's.
    names = [n for n in reader.get_variable_to_shape_map()
             if n.startswith(("model/", "optimizer/_trainable_variables/"))]
    return {n: reader.get_tensor(n) for n in names}


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_75_then_resumes(long_experiment, tmp_path, capsys):
    """Also the lock: a second trainer on the running one's model_dir is
    refused naming its pid, and the lock is released at exit 75."""
    model_dir = str(tmp_path / "run")
    proc = _cli(long_experiment, model_dir)
    try:
        assert _wait_for_checkpoint(model_dir, proc), proc.stderr.read()[-2000:]
        with pytest.raises(SystemExit) as refused:
            cli.run_or_exit(train.run, long_experiment, model_dir)
        err = capsys.readouterr().err.strip()
        assert refused.value.code == 2 and "\n" not in err, err
        assert os.path.join(model_dir, ".lock") in err and f"pid {proc.pid}" in err, err
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == preemption.EXIT_PREEMPTED, stderr[-3000:]
    assert "SIGTERM received: checkpoint saved at step" in stderr and "Traceback" not in stderr
    assert not os.path.exists(os.path.join(model_dir, ".lock"))
    step = int(tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
               .get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    assert 0 < step < 400


@pytest.mark.slow
# The default strategy's variant runs in make test; the mirrored one (twice its
# time) in make test-all: test_topology.py resumes across replica counts in
# make test, and the masks are keyed the same way under every strategy.
@pytest.mark.parametrize("flags", [(), pytest.param(
                             ("--strategy=mirrored", "--num_logical_cpus=2"),
                             marks=pytest.mark.extended)],
                         ids=["default", "mirrored"])
def test_sigkill_then_resume_is_bit_identical(mlm_data, tmp_path, flags):
    """Dropout on: the data position is restored, and the masks are keyed on
    the step and the example (no generator state to restore)."""
    expected, got = _kill_and_resume(mlm_data, tmp_path, flags, flags)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


MIRRORED = ("--strategy=mirrored", "--num_logical_cpus=2")
# 120 steps, part of them on the other replica count: the float sums' order
# differs there, and its rounding grows with the steps.
RESUME_TOLERANCE = 1e-5


@pytest.mark.slow
@pytest.mark.extended  # test_topology.py resumes across replica counts in make test
@pytest.mark.parametrize("killed_on, resumed_on", [(MIRRORED, ()), ((), MIRRORED)],
                         ids=["two_then_one", "one_then_two"])
def test_sigkill_then_resume_on_another_replica_count(mlm_data, tmp_path, killed_on,
                                                      resumed_on):
    """Killed on 2 replicas, resumed on 1 (and the reverse): the uninterrupted
    run's weights on the resumed topology up to the order of float sums."""
    expected, got = _kill_and_resume(mlm_data, tmp_path, killed_on, resumed_on)
    for name, value in expected.items():
        if "OPTIMIZER_SLOT" in name:
            continue
        scale = np.linalg.norm(value)
        if scale < 1e-4:  # the attention key biases: zero gradient, rounding noise
            assert np.abs(got[name] - value).max() < 1e-6, name  # (~1e-7 at 120 steps)
            continue
        diff = np.linalg.norm(got[name] - value) / scale
        assert diff < RESUME_TOLERANCE, (name, diff)


def _kill_and_resume(mlm_data, tmp_path, killed_on, resumed_on):
    """(weights of a run straight through on `resumed_on`, weights of one
    killed on `killed_on` at a random step and resumed on `resumed_on`)."""
    experiment = tiny_experiment(mlm_data, steps=120, steps_per_loop=2, checkpoint_every=4,
                                 log_every=10, keep_checkpoints=2)
    path = tmp_path / "experiment.json"
    path.write_text(experiment.to_json())
    straight_dir, killed_dir = str(tmp_path / "straight"), str(tmp_path / "killed")
    straight = _cli(str(path), straight_dir, *resumed_on)
    killed = _cli(str(path), killed_dir, *killed_on)
    try:
        assert _wait_for_checkpoint(killed_dir, killed)
        time.sleep(np.random.default_rng().uniform(0.0, 2.0))  # a random step
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=60) == -signal.SIGKILL  # killed mid-run
        assert straight.wait(timeout=300) == 0
    finally:
        straight.kill()
        killed.kill()
    resumed = _cli(str(path), killed_dir, *resumed_on)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    assert "Resumed from" in stderr
    assert ("across a topology change" in stderr) == (killed_on != resumed_on)
    expected, got = _final_weights(straight_dir), _final_weights(killed_dir)
    assert expected.keys() == got.keys() and expected
    return expected, got
