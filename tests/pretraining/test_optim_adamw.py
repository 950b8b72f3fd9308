"""AdamW / Adam / SGD updates against NumPy, default and MirroredStrategy."""

import numpy as np
import pytest

from pretraining.optimizers import SGD, AdamW
from tests.pretraining.test_optim_support import build, numpy_adam_moments, run_steps
from tests.pretraining.test_optim_support import strategy  # noqa: F401  (fixture)

VALUES = {"bert/layer_0/dense/kernel": [[0.5, -1.0], [2.0, 0.25]],
          "bert/layer_0/dense/bias": [0.1, -0.2]}
GRADS = [[np.array([[0.1, -0.3], [0.05, 0.2]], "float32"), np.array([0.4, -0.1], "float32")],
         [np.array([[-0.2, 0.1], [0.3, 0.0]], "float32"), np.array([0.2, 0.3], "float32")]]


def numpy_adamw(values, grads_per_step, lr, wd, bias_correction, b1=0.9, b2=0.999, eps=1e-6):
    def update(i, w, m, v, t):
        if bias_correction:  # Keras: correction folded into the step size
            alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            return w - lr * wd[i] * w - alpha * m / (np.sqrt(v) + eps)
        return w - lr * (m / (np.sqrt(v) + eps) + wd[i] * w)  # Google's AdamWeightDecayOptimizer

    return numpy_adam_moments(values, grads_per_step, update, b1, b2)


@pytest.mark.parametrize("bias_correction", [True, False])
def test_adamw_steps_match_numpy(strategy, bias_correction):  # noqa: F811
    variables, optimizer = build(strategy, lambda: AdamW(
        0.1, weight_decay=0.3, bias_correction=bias_correction), VALUES)
    run_steps(strategy, optimizer, variables, GRADS)
    expected = numpy_adamw(VALUES.values(), GRADS, 0.1, [0.3, 0.0], bias_correction)
    for var, want in zip(variables, expected):
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=var.path)


def test_sgd_momentum_with_decay(strategy):  # noqa: F811
    variables, optimizer = build(strategy, lambda: SGD(0.5, momentum=0.9, weight_decay=0.1),
                                 VALUES)
    run_steps(strategy, optimizer, variables, GRADS)
    w = [np.array(v, "float64") for v in VALUES.values()]
    m = [np.zeros_like(x) for x in w]
    for grads in GRADS:
        for i, g in enumerate(grads):
            decay = 0.1 if w[i].ndim >= 2 else 0.0
            w[i] = w[i] - w[i] * decay * 0.5
            m[i] = 0.9 * m[i] - 0.5 * g
            w[i] = w[i] + m[i]
    for var, want in zip(variables, w):
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=var.path)


def test_lazy_embedding_rows_keep_weights_and_moments(strategy):  # noqa: F811
    table = np.arange(12, dtype="float32").reshape(4, 3) / 10
    values = {"bert/embeddings/word_embeddings/embeddings": table}
    g1 = np.zeros((4, 3), "float32")
    g1[[0, 2]] = [[0.1, 0.2, -0.3], [0.5, -0.5, 0.1]]
    g2 = np.zeros((4, 3), "float32")
    g2[[0]] = [[-0.2, 0.1, 0.4]]  # row 2 absent now: dense Adam would still move it
    variables, lazy = build(strategy, lambda: AdamW(
        0.1, weight_decay=0.2, lazy_patterns=[r"embeddings$"]), values)
    run_steps(strategy, lazy, variables, [[g1], [g2]])
    got = variables[0].numpy()
    # Row 0 present in both steps: the dense Adam formula; row 2 only after
    # step 1; rows 1 and 3 never moved.
    row0 = numpy_adamw([table[0]], [[g1[0]], [g2[0]]], 0.1, [0.2], True)[0]
    row2 = numpy_adamw([table[2]], [[g1[2]]], 0.1, [0.2], True)[0]
    np.testing.assert_allclose(got[0], row0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], row2, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[[1, 3]], table[[1, 3]])
    momentum = lazy._momentums[0].numpy()
    np.testing.assert_allclose(momentum[2], 0.1 * g1[2], rtol=1e-6)  # not decayed by step 2
    np.testing.assert_array_equal(momentum[[1, 3]], 0.0)


def test_get_config_round_trip():
    optimizer = AdamW(0.01, weight_decay=0.05, bias_correction=False,
                      weight_decay_exclude=["pooler"], lr_multipliers={"embeddings": 0.1},
                      lookahead_steps=3)
    config = optimizer.get_config()
    assert config["weight_decay"] == 0.05 and config["bias_correction"] is False
    clone = AdamW.from_config(config)
    assert clone.decoupled_weight_decay == 0.05
    assert clone.lr_multipliers == {"embeddings": 0.1} and clone.lookahead_steps == 3
