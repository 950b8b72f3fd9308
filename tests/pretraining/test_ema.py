"""Weight EMA: NumPy recurrence, exact swap, checkpointing; default and mirrored."""

import numpy as np
import tensorflow as tf

from pretraining.config import OptimizerConfig
from pretraining.optimizers import SGD, ExponentialMovingAverage, create_ema
from tests.pretraining.test_optim_support import build, run_steps, strategy  # noqa: F401

VALUES = {"dense/kernel": [[0.5, -1.0], [2.0, 0.25]], "dense/bias": [0.1, -0.2]}
GRADS = [[np.full((2, 2), g, "float32"), np.full(2, -g, "float32")] for g in (0.3, -0.7, 1.1)]


def test_ema_matches_recurrence_and_swap_restores_exactly(strategy, tmp_path):  # noqa: F811
    variables, optimizer = build(strategy, lambda: SGD(0.1, momentum=0.0), VALUES)
    with strategy.scope():
        ema = create_ema(OptimizerConfig(ema_decay=0.9), variables)
    run_steps(strategy, optimizer, variables, GRADS, ema=ema)
    w = [np.array(v, "float64") for v in VALUES.values()]
    avg = [x.copy() for x in w]
    for grads in GRADS:
        for i, g in enumerate(grads):
            w[i] = w[i] - 0.1 * g
            avg[i] = 0.9 * avg[i] + 0.1 * w[i]
    raw = [v.numpy().copy() for v in variables]
    for v, want in zip(variables, w):
        np.testing.assert_allclose(v.numpy(), want, rtol=1e-6)
    with ema.swap():
        for v, want in zip(variables, avg):
            np.testing.assert_allclose(v.numpy(), want, rtol=1e-6)
            for component in getattr(v.value, "values", [v.value]):
                np.testing.assert_array_equal(component.numpy(), v.numpy())
    for v, before in zip(variables, raw):
        np.testing.assert_array_equal(v.numpy(), before)  # bit-identical
    for a, want in zip(ema.averages, avg):
        np.testing.assert_allclose(a.numpy(), want, rtol=1e-6)

    # The averages (and only they) round-trip through tf.train.Checkpoint.
    path = tf.train.Checkpoint(ema=ema).write(str(tmp_path / "ckpt"))
    with strategy.scope():
        other = ExponentialMovingAverage(variables, decay=0.9)
    tf.train.Checkpoint(ema=other).read(path).assert_consumed()
    for a, b in zip(ema.averages, other.averages):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_ema_off_and_bad_decay():
    assert create_ema(OptimizerConfig(), []) is None
    try:
        ExponentialMovingAverage([], decay=1.0)
    except ValueError as e:
        assert "decay=1.0" in str(e)
    else:
        raise AssertionError("decay=1.0 accepted")
