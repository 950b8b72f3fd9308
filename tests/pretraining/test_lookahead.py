"""Lookahead against its recurrence, default and mirrored."""

import keras
import numpy as np

from pretraining.optimizers import SGD, Lookahead
from tests.pretraining.test_optim_support import build, run_steps, strategy  # noqa: F401

VALUES = {"dense/kernel": [[0.5, -1.0], [2.0, 0.25]]}
GRADS = [[np.full((2, 2), g, "float32")] for g in (0.3, -0.7, 1.1, 0.2, -0.4, 0.9, 0.5)]


def test_lookahead_matches_recurrence(strategy):  # noqa: F811
    variables, optimizer = build(strategy, lambda: SGD(
        0.1, momentum=0.5, lookahead_steps=3, lookahead_alpha=0.4), VALUES)
    run_steps(strategy, optimizer, variables, GRADS)
    fast = np.array(VALUES["dense/kernel"], "float64")
    slow, m = fast.copy(), np.zeros_like(fast)
    for t, (g,) in enumerate(GRADS, start=1):
        m = 0.5 * m - 0.1 * g  # the inner SGD keeps its momentum across syncs
        fast = fast + m
        if t % 3 == 0:
            slow = slow + 0.4 * (fast - slow)
            fast = slow.copy()
    np.testing.assert_allclose(variables[0].numpy(), fast, rtol=1e-5, atol=1e-6)


def test_lookahead_mixin_over_keras_adam():
    class LookaheadAdam(Lookahead, keras.optimizers.Adam):
        pass

    variable = keras.Variable(np.zeros(2, "float32"))
    optimizer = LookaheadAdam(learning_rate=0.1, lookahead_steps=2, lookahead_alpha=0.5)
    for _ in range(2):
        optimizer.apply_gradients([(np.ones(2, "float32"), variable)])
    # Adam moves ~0.1 per step: fast at -0.2, pulled half way back to 0.
    np.testing.assert_allclose(variable.numpy(), -0.1, rtol=1e-3)
