"""The trainer under MirroredStrategy (2 logical CPUs) equals one device."""

import numpy as np
import tensorflow as tf

from pretraining.trainer import Trainer
from tests.conftest import tiny_experiment


def _run(mlm_data, model_dir, strategy=None, **train):
    experiment = tiny_experiment(mlm_data, **train)
    experiment.model.hidden_dropout_prob = 0.0
    experiment.model.attention_probs_dropout_prob = 0.0
    trainer = Trainer(experiment, str(model_dir), strategy)
    summary = trainer.train()
    weights = {v.path: v.numpy() for v in trainer.state.model.weights}
    return summary, weights, trainer.log.records()


def test_mirrored_equals_default(mlm_data, tmp_path):
    settings = dict(steps=10, global_batch_size=8, steps_per_loop=5, checkpoint_every=10)
    one, w_one, rec_one = _run(mlm_data, tmp_path / "default", **settings)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two, w_two, rec_two = _run(mlm_data, tmp_path / "mirrored", strategy, **settings)
    assert strategy.num_replicas_in_sync == 2
    # Same loss at every logged step, same eval over the same tokens.
    for a, b in zip(rec_one, rec_two):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
        np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-5)
    assert one["eval_masked_tokens"] == two["eval_masked_tokens"]
    np.testing.assert_allclose(one["eval_loss"], two["eval_loss"], rtol=1e-5)
    # Weights: relative difference per variable (norm of difference / norm;
    # the floor covers the attention key bias, whose gradient is zero in exact
    # arithmetic, so it holds only rounding noise of ~1e-9).
    for path, value in w_one.items():
        diff = np.linalg.norm(w_two[path] - value) / max(np.linalg.norm(value), 1e-3)
        assert diff < 1e-5, (path, diff)
