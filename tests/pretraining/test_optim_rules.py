"""Weight-decay exclusions and per-variable learning rates."""

import keras
import numpy as np

from pretraining.config import BertConfig
from pretraining.model import BertEncoder
from pretraining.optimizers import (SGD, AdamW, PerVariableRules, lr_multipliers,
                                    split_weight_decay)
from tests.pretraining.test_optim_support import build, run_steps, strategy  # noqa: F401

PATHS = {"bert/embeddings/word/embeddings": np.ones((3, 2)),
         "bert/layer_0/dense/kernel": np.ones((2, 2)),
         "bert/layer_1/dense/kernel": np.ones((2, 2)),
         "bert/layer_1/dense/bias": np.ones(2),
         "mlm/transform/kernel": np.ones((2, 2))}


def _encoder(repo_root):
    return BertEncoder(BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json"))


def test_decayed_set_by_rank_and_pattern(repo_root):
    variables = _encoder(repo_root).trainable_variables
    split = split_weight_decay(variables, exclude=[r"embeddings/", r"pooler/"])
    decayed = {v.path for v in split.decayed}
    expected = {f"bert/layer_{i}/{name}/kernel" for i in range(2)
                for name in ("attention/query", "attention/key", "attention/value",
                             "attention_output", "intermediate", "output")}
    assert decayed == expected
    assert {v.path for v in split.excluded} == {v.path for v in variables} - expected


def test_layerwise_decay_convention(repo_root):
    variables = _encoder(repo_root).trainable_variables
    got = dict(zip((v.path for v in variables),
                   lr_multipliers(variables, {"pooler": 0.5}, layerwise_decay=0.5)))
    # L = 2: layer_i -> 0.5^(2-i), embeddings -> 0.5^3, others -> pattern or 1.
    assert got["bert/layer_0/attention/query/kernel"] == 0.25
    assert got["bert/layer_1/output_layer_norm/gamma"] == 0.5
    assert got["bert/embeddings/word_embeddings/embeddings"] == 0.125
    assert got["bert/embeddings/LayerNorm/beta"] == 0.125
    assert got["bert/pooler/kernel"] == 0.5


def test_first_matching_multiplier_wins():
    variables = [keras.Variable(np.ones(2, "float32"), name="bias")]
    assert lr_multipliers(variables, {"bia": 3.0, "bias": 2.0}) == [3.0]
    assert lr_multipliers(variables, {"nothing": 3.0}) == [1.0]


MULTIPLIERS = {"embeddings": 0.1, "layer_0/": 0.2}


def _expected_multipliers():
    # layer-wise 0.5 with L = 2 on top of the patterns.
    return [0.1 * 0.5 ** 3, 0.2 * 0.5 ** 2, 0.5, 0.5, 1.0]


def test_sgd_step_is_lr_times_multiplier_times_grad(strategy):  # noqa: F811
    variables, optimizer = build(strategy, lambda: SGD(
        0.1, momentum=0.0, lr_multipliers=MULTIPLIERS, layerwise_lr_decay=0.5), PATHS)
    grads = [np.full(np.shape(v), 0.3, "float32") for v in PATHS.values()]
    run_steps(strategy, optimizer, variables, [grads])
    for var, g, mult in zip(variables, grads, _expected_multipliers()):
        np.testing.assert_allclose(1.0 - var.numpy(), 0.1 * mult * g, rtol=1e-5, atol=1e-7,
                                   err_msg=var.path)


def test_adam_first_step_is_lr_times_multiplier_times_sign(strategy):  # noqa: F811
    variables, optimizer = build(strategy, lambda: AdamW(
        0.01, weight_decay=0.0, lr_multipliers=MULTIPLIERS, layerwise_lr_decay=0.5), PATHS)
    grads = [np.full(np.shape(v), -0.3, "float32") for v in PATHS.values()]
    run_steps(strategy, optimizer, variables, [grads])
    for var, mult in zip(variables, _expected_multipliers()):
        np.testing.assert_allclose(var.numpy() - 1.0, 0.01 * mult, rtol=1e-3, atol=1e-7,
                                   err_msg=var.path)


def test_decay_scaled_by_multiplier(strategy):  # noqa: F811
    variables, optimizer = build(strategy, lambda: SGD(
        0.1, momentum=0.0, weight_decay=0.5, lr_multipliers={"layer_0/": 0.2}), PATHS)
    run_steps(strategy, optimizer, variables, [[np.zeros(np.shape(v), "float32")
                                                for v in PATHS.values()]])
    got = {v.path: float(v.numpy().flat[0]) for v in variables}
    assert np.isclose(got["bert/layer_0/dense/kernel"], 1 - 0.1 * 0.2 * 0.5)
    assert np.isclose(got["bert/layer_1/dense/kernel"], 1 - 0.1 * 0.5)
    assert got["bert/layer_1/dense/bias"] == 1.0  # rank 1: excluded


def test_mixin_over_any_keras_optimizer():
    class RMSpropRules(PerVariableRules, keras.optimizers.RMSprop):
        pass

    variables = [keras.Variable(np.ones(2, "float32"), name="a"),
                 keras.Variable(np.ones(2, "float32"), name="b")]
    optimizer = RMSpropRules(learning_rate=0.01, lr_multipliers={"^b$": 0.0})
    optimizer.apply_gradients(zip([np.ones(2, "float32")] * 2, variables))
    assert np.all(variables[0].numpy() < 1.0)
    np.testing.assert_array_equal(variables[1].numpy(), 1.0)
