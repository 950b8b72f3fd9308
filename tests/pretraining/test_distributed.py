"""The trainer under MirroredStrategy (2 logical CPUs) equals one device,
dropout on (masks keyed on the example: see also test_topology.py)."""

import numpy as np
import pytest
import tensorflow as tf

from pretraining.trainer import Trainer
from tests.conftest import tiny_experiment


def _run(mlm_data, model_dir, strategy=None, task="mlm", **train):
    experiment = tiny_experiment(mlm_data, **train)
    experiment.task = task
    experiment.model.attention_mask_type = {"mlm": "bidirectional", "seq2seq": "unilm"}[task]
    experiment.model.hidden_dropout_prob = 0.1
    experiment.model.attention_probs_dropout_prob = 0.1
    trainer = Trainer(experiment, str(model_dir), strategy)
    summary = trainer.train()
    weights = {v.path: v.numpy() for v in trainer.state.model.weights}
    return summary, weights, trainer.log.records()


def _relative_differences(w_one, w_two):
    """Norm of the difference / norm, per variable (the floor covers the
    attention key bias, whose gradient is zero in exact arithmetic, so it holds
    only rounding noise of ~1e-9)."""
    return {path: np.linalg.norm(w_two[path] - value) / max(np.linalg.norm(value), 1e-3)
            for path, value in w_one.items()}


# Dropout on: seq2seq's replicated step (UniLM mask), beside test_topology.py's
# masked LM + NSP; ~25 s, in make test so that both tasks' equality is checked.
def test_seq2seq_mirrored_equals_default(task_data, tmp_path, mirrored):
    data, task = task_data["seq2seq"], "seq2seq"
    settings = dict(steps=20, global_batch_size=8, steps_per_loop=5, checkpoint_every=10,
                    task=task)
    one, w_one, rec_one = _run(data, tmp_path / "default", **settings)
    two, w_two, rec_two = _run(data, tmp_path / "mirrored", mirrored, **settings)
    assert mirrored.num_replicas_in_sync == 2
    # Same loss at every logged step, same eval over the same tokens.
    for a, b in zip(rec_one, rec_two):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
        np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)
    assert one["eval_predictions"] == two["eval_predictions"]
    np.testing.assert_allclose(one["eval_loss"], two["eval_loss"], rtol=1e-5)
    for path, diff in _relative_differences(w_one, w_two).items():
        assert diff < 1e-5, (path, diff)


# make test-all: test_topology.py compares accumulation (one device, and 2 replicas
# after a resume) with the whole batch in make test.
@pytest.mark.extended
@pytest.mark.parametrize("use_mirrored", [False, True], ids=["default", "mirrored"])
def test_gradient_accumulation_equals_the_whole_batch(mlm_data, tmp_path, mirrored,
                                                      use_mirrored):
    """4 micro-batches summed per update == the 16-example batch at once, and
    the schedule advances once per update."""
    strategy = mirrored if use_mirrored else None
    settings = dict(steps=6, global_batch_size=16, steps_per_loop=3, checkpoint_every=6)
    one, w_one, rec_one = _run(mlm_data, tmp_path / "whole", **settings)
    k = 2 if use_mirrored else 4  # micro-batches per replica
    acc, w_acc, rec_acc = _run(mlm_data, tmp_path / "accumulated", strategy,
                               gradient_accumulation_steps=k, **settings)
    for a, b in zip(rec_one, rec_acc):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
        assert a["learning_rate"] == b["learning_rate"]
    for path, diff in _relative_differences(w_one, w_acc).items():
        assert diff < 1e-5, (path, diff)


def test_ema_weights_are_used_for_eval_and_saved(mlm_data, tmp_path):
    experiment = tiny_experiment(mlm_data, steps=10, checkpoint_every=10)
    experiment.optimizer.ema_decay = 0.9
    trainer = Trainer(experiment, str(tmp_path))
    summary = trainer.train()
    ema = trainer.state.ema
    raw = {v.path: v.numpy() for v in trainer.state.model.weights}
    trainer.state.ema = None  # evaluate() now uses whatever weights are in the model
    raw_eval = trainer.evaluate()
    with ema.swap():
        averaged = {v.path: v.numpy() for v in trainer.state.model.weights}
        ema_eval = trainer.evaluate()
    assert any(not np.array_equal(raw[p], averaged[p]) for p in raw)
    assert summary["eval_loss"] == ema_eval["eval_loss"] != raw_eval["eval_loss"]
    # Three evaluations (the final one and two here), one trace of the eval step.
    assert trainer._eval_step.experimental_get_tracing_count() == 1
    for v in trainer.state.model.weights:  # raw weights back, bit for bit
        np.testing.assert_array_equal(v.numpy(), raw[v.path])
    reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints"))
    assert any(n.startswith("ema/") for n in reader.get_variable_to_shape_map())
