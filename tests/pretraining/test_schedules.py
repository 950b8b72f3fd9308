"""Learning-rate schedules against hand-computed values."""

import math

import keras
import numpy as np
import pytest

from pretraining.config import OptimizerConfig
from pretraining.optimizers import (PiecewiseLinear, WarmupCosineDecay, WarmupPolynomialDecay,
                                    create_optimizer)


def _check(schedule, expected):
    for step, value in expected.items():
        np.testing.assert_allclose(float(schedule(step)), value, rtol=1e-6, atol=1e-9,
                                   err_msg=f"step {step}")


def test_polynomial():
    schedule = WarmupPolynomialDecay(1.0, warmup_steps=10, total_steps=110,
                                     end_learning_rate=0.1, power=2.0)
    _check(schedule, {0: 0.0, 5: 0.5, 10: 1.0, 60: 0.1 + 0.9 * 0.25, 110: 0.1, 200: 0.1})


def test_cosine():
    schedule = WarmupCosineDecay(2.0, warmup_steps=4, total_steps=104)
    _check(schedule, {2: 1.0, 4: 2.0, 29: (1 + math.cos(math.pi / 4)),
                      54: 1.0, 104: 0.0, 500: 0.0})


def test_piecewise_interpolates_and_holds():
    schedule = PiecewiseLinear(0.5, {"0": 0.0, "10": 1.0, "20": 1.0, "30": 0.2})
    _check(schedule, {0: 0.0, 5: 0.25, 10: 0.5, 15: 0.5, 25: 0.3, 30: 0.1, 1000: 0.1})
    clone = PiecewiseLinear.from_config(schedule.get_config())
    assert clone.points == schedule.points


def test_piecewise_starting_late_holds_first_value():
    _check(PiecewiseLinear(1.0, {5: 0.3, 10: 0.6}), {0: 0.3, 5: 0.3, 7: 0.42, 12: 0.6})


@pytest.mark.parametrize("points", [{"a": 1.0}, {"-1": 1.0}, {"1": -0.5}, {}])
def test_piecewise_rejects_bad_points(points):
    with pytest.raises(ValueError, match="piecewise"):
        OptimizerConfig(schedule="piecewise", piecewise=points)


def test_config_schedules_count_optimizer_updates():
    config = OptimizerConfig.from_dict({"schedule": "piecewise", "learning_rate": 0.1,
                                        "piecewise": {"0": 1.0, "2": 0.0}})
    assert config.piecewise == {0: 1.0, 2: 0.0}
    optimizer = create_optimizer(config, total_steps=10)
    variable = keras.Variable(np.zeros(1, "float32"))
    optimizer.build([variable])
    rates = []
    for _ in range(3):
        rates.append(float(optimizer.learning_rate))
        optimizer.apply_gradients([(np.ones(1, "float32"), variable)])
    np.testing.assert_allclose(rates, [0.1, 0.05, 0.0], rtol=1e-6)
    cosine = create_optimizer(OptimizerConfig(schedule="cosine", warmup_steps=0), 10)
    np.testing.assert_allclose(float(cosine.learning_rate), 1e-4)
