"""LAMB trust ratio against NumPy, default and mirrored."""

import numpy as np

from pretraining.optimizers import LAMB
from tests.pretraining.test_optim_support import build, numpy_adam_moments, run_steps
from tests.pretraining.test_optim_support import strategy  # noqa: F401  (fixture)

VALUES = {"layer_0/kernel": [[0.5, -1.0], [2.0, 0.25]], "layer_0/bias": [0.1, -0.2],
          "pooler/kernel": [[1.0, 2.0], [3.0, 4.0]]}
GRADS = [[np.array([[0.1, -0.3], [0.05, 0.2]], "float32"), np.array([0.4, -0.1], "float32"),
          np.array([[1.0, 0.0], [0.0, -1.0]], "float32")],
         [np.array([[-0.2, 0.1], [0.3, 0.0]], "float32"), np.array([0.2, 0.3], "float32"),
          np.array([[0.5, 0.5], [-0.5, 0.0]], "float32")]]


def numpy_lamb(values, grads_per_step, lr, wd, adapted, b1=0.9, b2=0.999, eps=1e-6):
    def update(i, w, m, v, t):
        u = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps) + wd[i] * w
        ratio = np.linalg.norm(w) / np.linalg.norm(u) if adapted[i] else 1.0
        return w - lr * ratio * u

    return numpy_adam_moments(values, grads_per_step, update, b1, b2)


def test_lamb_matches_numpy(strategy):  # noqa: F811
    variables, optimizer = build(strategy, lambda: LAMB(
        0.05, weight_decay=0.1, layer_adaptation_exclude=["pooler"]), VALUES)
    run_steps(strategy, optimizer, variables, GRADS)
    # kernel: decayed + adapted; bias: rank 1, neither; pooler: decayed, not adapted.
    expected = numpy_lamb(VALUES.values(), GRADS, 0.05, [0.1, 0.0, 0.1], [True, False, False])
    for var, want in zip(variables, expected):
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=var.path)
