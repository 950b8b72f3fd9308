"""Where ε enters Adam (docs/optimizers.md, "Conventions"): our AdamW with
bias correction adds ε to the square root of the *uncorrected* second
moment, as Keras; PyTorch's AdamW adds it to the corrected one. Same
gradients and weights: PyTorch follows ours only with its ε applied the
Keras way: ε / sqrt(1 − β2^t) in its own formula, i.e. ε added to
sqrt(v) before the correction."""

import math

import keras
import numpy as np
import pytest

from pretraining.optimizers import AdamW

LR, WD, EPS, B1, B2, STEPS = 1e-3, 0.01, 1e-6, 0.9, 0.999, 12


def _problem():
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.02, (16, 8)).astype("float32")
    # Gradients of the size ε matters for (sqrt(v) ~ 1e-5 against ε = 1e-6).
    grads = rng.normal(0, 1e-5, (STEPS, 16, 8)).astype("float32")
    return weights, grads


def _ours(weights, grads):
    variable = keras.Variable(weights, name="kernel")
    optimizer = AdamW(LR, B1, B2, EPS, weight_decay=WD, bias_correction=True)
    for g in grads:
        optimizer.apply_gradients([(g, variable)])
    return variable.numpy()


def _torch(weights, grads, keras_epsilon):
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.tensor(weights))
    optimizer = torch.optim.AdamW([param], lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD)
    for t, g in enumerate(grads, 1):
        if keras_epsilon:
            optimizer.param_groups[0]["eps"] = EPS / math.sqrt(1 - B2 ** t)
        param.grad = torch.tensor(g)
        optimizer.step()
    return param.detach().numpy()


def test_pytorch_adamw_follows_ours_only_with_keras_epsilon():
    weights, grads = _problem()
    ours = _ours(weights, grads)
    assert np.abs(ours - weights).max() > 2e-3  # the weights moved (12 steps of ~1e-3)
    np.testing.assert_allclose(_torch(weights, grads, keras_epsilon=True), ours, atol=1e-7)
    plain = _torch(weights, grads, keras_epsilon=False)
    assert np.abs(plain - ours).max() > 1e-5, np.abs(plain - ours).max()
