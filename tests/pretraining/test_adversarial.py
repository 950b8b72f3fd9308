"""FGM (pretraining.adversarial): one step against NumPy, the trainer's step
under MirroredStrategy and with gradient accumulation against one device."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from pretraining import adversarial
from pretraining.config import ExperimentConfig, TrainConfig, check_adversarial
from pretraining.finetune import losses
from pretraining.trainer import Trainer
from tests.conftest import tiny_experiment

VOCAB, HIDDEN, CLASSES, BATCH, SEQ = 11, 4, 3, 5, 6


class _Tiny(keras.Model):
    """Mean of the word embeddings → dense → logits."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.word_embeddings = keras.layers.Embedding(VOCAB, HIDDEN, dtype=self.dtype_policy,
                                                      name="word_embeddings")
        self.classifier = keras.layers.Dense(CLASSES, dtype=self.dtype_policy, name="classifier")

    def call(self, ids):
        return self.classifier(ops.mean(self.word_embeddings(ids), axis=1))


def _numpy_gradients(ids, labels, E, W, b):
    """Softmax CE (mean over the batch) of the tiny model and its gradients, by hand."""
    x = E[ids].mean(axis=1)  # (batch, hidden)
    logits = x @ W + b
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    d_logits = (p - np.eye(CLASSES)[labels]) / len(ids)
    d_x = d_logits @ W.T
    d_E = np.zeros_like(E)
    np.add.at(d_E, ids, np.repeat(d_x[:, None, :] / ids.shape[1], ids.shape[1], axis=1))
    return [d_E, x.T @ d_logits, d_logits.sum(0)]


@pytest.mark.parametrize("policy,jit_compile,scale", [
    ("float32", False, 1.0), ("float32", True, 1.0), ("mixed_bfloat16", False, 1.0),
    ("mixed_float16", False, 1024.0)])
def test_one_fgm_step_matches_numpy(policy, jit_compile, scale):
    """Also the trainer's whole-step XLA program (jit_compile on one device),
    and a float16 loss scale: `g/‖g‖` does not depend on it."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (BATCH, SEQ)).astype(np.int32)
    labels = rng.integers(0, CLASSES, BATCH).astype(np.int32)
    model = _Tiny(dtype=policy, name="tiny")
    model(ids)
    weights = [rng.normal(size=v.shape).astype(np.float32) for v in model.trainable_variables]
    for v, w in zip(model.trainable_variables, weights):
        v.assign(w)
    variables = model.trainable_variables
    epsilon = 0.7
    fgm = adversarial.FastGradientMethod(epsilon, variables, embedding_index=0)
    seen = []

    def forward_backward():
        with tf.GradientTape() as tape:
            logits = model(ids, training=True)
            loss = losses.softmax_cross_entropy(labels, logits) / BATCH
            scaled = loss * scale  # the trainer's loss scale under mixed_float16
        seen.append(loss)
        return {"loss_sum": loss}, tape.gradient(scaled, variables)

    sums, grads = tf.function(lambda: fgm(forward_backward), jit_compile=jit_compile)()
    embedding = variables[0].numpy()
    assert embedding.tobytes() == weights[0].tobytes()  # restored bit for bit
    E, W, b = (w.astype(np.float64) for w in weights)
    clean = _numpy_gradients(ids, labels, E, W, b)
    r = epsilon * clean[0] / np.linalg.norm(clean[0])
    perturbed = _numpy_gradients(ids, labels, E + r, W, b)
    # bfloat16 computes with 8-bit mantissas (2⁻⁸ relative per operation), float16 11.
    tolerance = {"float32": 1e-5, "mixed_bfloat16": 3e-2, "mixed_float16": 5e-3}[policy]
    for got, a, c in zip(grads, clean, perturbed):
        np.testing.assert_allclose(got.numpy() / scale, a + c, rtol=tolerance,
                                   atol=tolerance * np.abs(a + c).max())
    # The perturbed pass's gradient is not the clean one's: the check above can fail.
    assert np.abs(perturbed[0] - clean[0]).max() > 0.1 * np.abs(clean[0]).max()
    assert len(seen) == 2  # traced: the clean pass and the perturbed one
    logits = (E[ids].mean(1) @ W + b)
    reference = -np.mean(logits[np.arange(BATCH), labels]
                         - np.log(np.exp(logits).sum(-1)))
    np.testing.assert_allclose(float(sums["loss_sum"]), reference, rtol=tolerance)


def test_zero_gradient_gives_no_perturbation():
    fgm = adversarial.FastGradientMethod(1.0, [tf.Variable(tf.ones([3, 2]))], embedding_index=0)
    np.testing.assert_array_equal(fgm.perturbation(tf.zeros([3, 2])), np.zeros([3, 2]))


def test_config_checks():
    assert check_adversarial({}, "train.adversarial") == {}
    assert TrainConfig(adversarial={"epsilon": 2}).adversarial == {"method": "fgm",
                                                                   "epsilon": 2.0}
    with pytest.raises(ValueError, match=r"train.adversarial.epsilon.*Received: epsilon=0"):
        TrainConfig(adversarial={"method": "fgm", "epsilon": 0})
    with pytest.raises(ValueError, match=r"train.adversarial.method.*Received.*'pgd'"):
        TrainConfig(adversarial={"method": "pgd"})
    with pytest.raises(ValueError, match=r"Unknown key\(s\) in `train.adversarial`: \['eps'\]"):
        TrainConfig(adversarial={"eps": 1.0})
    with pytest.raises(TypeError, match="Received: train.adversarial='fgm'"):
        TrainConfig(adversarial="fgm")
    experiment = {"model": "bert_test", "data": {"train_dir": "records"}}
    parsed = ExperimentConfig.from_dict(experiment,
                                        overrides=['train.adversarial={"epsilon": 0.5}'])
    assert parsed.train.adversarial == {"method": "fgm", "epsilon": 0.5}
    assert ExperimentConfig.from_dict(experiment).train.adversarial == {}  # off by default
    with pytest.raises(ValueError, match="train.adversarial must be of type dict. Received: 'fgm'"):
        ExperimentConfig.from_dict(experiment, overrides=["train.adversarial=fgm"])
    with pytest.raises(ValueError, match="Received: 0 such variables"):
        adversarial.word_embedding_index([tf.Variable(1.0, name="kernel")])


def _run(mlm_data, model_dir, strategy=None, adversarial_config=None, **train):
    settings = dict(steps=2, global_batch_size=8, steps_per_loop=1, checkpoint_every=2)
    settings.update(train)
    experiment = tiny_experiment(mlm_data, **settings)
    experiment.train.adversarial = check_adversarial(adversarial_config or {}, "adversarial")
    experiment.data.eval_dir = ""
    experiment.model.hidden_dropout_prob = 0.0
    experiment.model.attention_probs_dropout_prob = 0.0
    experiment.model.num_hidden_layers = 1  # half the tracing: 8 forward+backward passes
    trainer = Trainer(experiment, str(model_dir), strategy)
    trainer.train()
    trainer.close()
    return {v.path: v.numpy() for v in trainer.state.model.weights}, trainer.log.records()


def _max_relative_difference(a, b):
    return max(np.linalg.norm(b[p] - a[p]) / max(np.linalg.norm(a[p]), 1e-3) for p in a)


def test_fgm_in_the_trainer_mirrored_with_accumulation_equals_one_device(mlm_data, tmp_path,
                                                                         mirrored, monkeypatch):
    """train.adversarial: 2 replicas of 2 micro-batches each == one device's
    whole batch (r from the all-reduced, accumulated gradient)."""
    calls = []
    fgm_call = adversarial.FastGradientMethod.__call__

    def counted(self, forward_backward):  # traced once per replica and trace
        calls.append(self.epsilon)
        return fgm_call(self, forward_backward)

    monkeypatch.setattr(adversarial.FastGradientMethod, "__call__", counted)
    fgm = {"method": "fgm", "epsilon": 0.5}
    one, records = _run(mlm_data, tmp_path / "one", adversarial_config=fgm)
    assert calls == [0.5]  # the trainer's step went through FGM
    two, records_two = _run(mlm_data, tmp_path / "two", mirrored, adversarial_config=fgm,
                            gradient_accumulation_steps=2)
    assert calls == [0.5] * 3
    for a, b in zip(records, records_two):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-6)
        np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-5)
    assert _max_relative_difference(one, two) < 1e-5
