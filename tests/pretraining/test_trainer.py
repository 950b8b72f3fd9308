import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pretraining.trainer import Trainer
from tests.conftest import REPO_ROOT, tiny_experiment


def _weights(trainer):
    return {v.path: v.numpy() for v in trainer.state.model.weights}


def test_loss_decreases(mlm_data, tmp_path):
    experiment = tiny_experiment(mlm_data, steps=60, steps_per_loop=10, checkpoint_every=60)
    trainer = Trainer(experiment, str(tmp_path))
    summary = trainer.train()
    records = trainer.log.records()
    assert [r["step"] for r in records] == [1, 10, 20, 30, 40, 50, 60]  # step 1: the first
    assert records[-1]["loss"] < records[1]["loss"] - 0.5, records
    assert summary["step"] == 60
    assert 0.0 <= summary["eval_masked_lm_accuracy"] <= 1.0
    assert np.isfinite(summary["eval_loss"])
    on_disk = json.load(open(tmp_path / "summary.json"))
    assert on_disk["step"] == 60 and on_disk["loss"] == pytest.approx(records[-1]["loss"])
    for name in ("config.json", "data_manifest.json", "versions.json", "metrics.jsonl"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "train").is_dir()  # TensorBoard events


def test_resume_continues_at_saved_step_and_matches(mlm_data, tmp_path):
    """20 steps, stop, resume to 30 == 30 steps straight (dropout on)."""
    experiment = tiny_experiment(mlm_data, steps=30)
    straight = Trainer(experiment, str(tmp_path / "straight"))
    straight.train()

    first = Trainer(experiment, str(tmp_path / "resumed"))
    assert first.resumed_from is None
    first.train(stop_at=20)
    second = Trainer(experiment, str(tmp_path / "resumed"))
    assert second.resumed_from == 20
    summary = second.train()
    assert summary["step"] == 30
    expected, got = _weights(straight), _weights(second)
    assert expected.keys() == got.keys()
    for path in expected:
        np.testing.assert_array_equal(got[path], expected[path], err_msg=path)
    steps = [r["step"] for r in second.log.records()]
    assert steps == [1, 5, 10, 15, 20, 25, 30]


def test_data_that_does_not_fit_is_refused(mlm_data, tmp_path):
    experiment = tiny_experiment(mlm_data)
    experiment.model.vocab_size = 999
    with pytest.raises(ValueError, match=r"vocab_size: data has 400, model has 999"):
        Trainer(experiment, str(tmp_path))


def _train_cli(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "pretraining.train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def experiment_file(mlm_data, tmp_path):
    experiment = tiny_experiment(mlm_data, steps=10)
    path = tmp_path / "experiment.json"
    path.write_text(experiment.to_json())
    return str(path)


# Also covered end to end by test_safety.py (SIGTERM and SIGKILL runs resumed by the CLI).
@pytest.mark.extended
def test_cli_resumes_existing_run(experiment_file, tmp_path):
    model_dir = str(tmp_path / "run")
    first = _train_cli([f"--experiment={experiment_file}", f"--model_dir={model_dir}"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Starting from scratch" in first.stderr
    second = _train_cli([f"--experiment={experiment_file}", f"--model_dir={model_dir}",
                         "--override=train.steps=15", "--allow_changes=train.steps"], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "at step 10." in second.stderr and "Resumed from" in second.stderr
    summary = json.load(open(os.path.join(model_dir, "summary.json")))
    assert summary["step"] == 15
    assert set(summary) >= {"step", "loss", "masked_lm_accuracy", "eval_loss",
                            "eval_masked_lm_accuracy", "examples_per_second"}


@pytest.mark.parametrize("flag, message", [
    ("--override=train.steps=ten", "train.steps must be of type int. Received: 'ten'"),
    ("--override=train.stepz=1", "`train` has no field 'stepz'"),
    ("--strategy=gpu8", "--strategy"),
])
def test_cli_bad_flag_is_one_line(experiment_file, tmp_path, flag, message):
    result = _train_cli([f"--experiment={experiment_file}", f"--model_dir={tmp_path}/r", flag],
                        tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_init_checkpoint_loads_weights_only(mlm_data, tmp_path):
    source = Trainer(tiny_experiment(mlm_data, steps=10), str(tmp_path / "source"))
    source.train()
    experiment = tiny_experiment(mlm_data, steps=10,
                                 init_checkpoint=str(tmp_path / "source" / "checkpoints"))
    target = Trainer(experiment, str(tmp_path / "target"))
    assert target.resumed_from is None
    assert int(target.state.step.numpy()) == 0  # weights only: step and optimizer fresh
    assert int(target.state.optimizer.iterations.numpy()) == 0
    for a, b in zip(source.state.model.weights, target.state.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_init_checkpoint_of_another_model_is_refused(mlm_data, tmp_path):
    source = Trainer(tiny_experiment(mlm_data, steps=5, checkpoint_every=5),
                     str(tmp_path / "source"))
    source.train()
    experiment = tiny_experiment(mlm_data, init_checkpoint=str(tmp_path / "source"))
    experiment.model.hidden_size = 64
    with pytest.raises(ValueError, match="does not hold this model's encoder"):
        Trainer(experiment, str(tmp_path / "target"))


# Accumulation 2 inside the compiled step runs in make test-all; accumulation
# itself is covered by test_distributed.py::test_gradient_accumulation_equals_the_whole_batch.
@pytest.mark.parametrize("accumulation", [1, pytest.param(2, marks=pytest.mark.extended)])
def test_whole_step_xla_matches_the_uncompiled_step(mlm_data, tmp_path, accumulation):
    """`train.jit_compile` on one device compiles the whole step (forward,
    backward, clipping, AdamW) with XLA: same losses and weights as without."""
    trainers = {}
    for jit in (False, True):
        experiment = tiny_experiment(mlm_data, steps=4, jit_compile=jit,
                                     gradient_accumulation_steps=accumulation)
        experiment.model.hidden_dropout_prob = 0.0  # XLA draws other random bits
        trainer = Trainer(experiment, str(tmp_path / f"jit{int(jit)}"))
        trainer.train()
        trainers[jit] = trainer
    assert trainers[True].whole_step_xla and not trainers[False].whole_step_xla
    # The compiled step sums the global norm as matrix-vector products.
    assert trainers[True].gradient_transform.matrix_products
    assert not trainers[False].gradient_transform.matrix_products
    plain, compiled = (trainers[j].log.records() for j in (False, True))
    np.testing.assert_allclose([r["loss"] for r in compiled], [r["loss"] for r in plain],
                               rtol=1e-4)
    np.testing.assert_allclose([r["grad_norm"] for r in compiled],
                               [r["grad_norm"] for r in plain], rtol=1e-4)
    expected, got = _weights(trainers[False]), _weights(trainers[True])
    for path in expected:
        diff = np.linalg.norm(got[path] - expected[path])
        assert diff <= 1e-4 * max(np.linalg.norm(expected[path]), 1.0), path
