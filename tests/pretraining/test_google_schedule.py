"""`schedule=google_polynomial` is Google BERT's learning-rate curve, checked
against TF1's `polynomial_decay` plus Google's warmup override; the startup
log names every convention (issue #27)."""

import numpy as np
import pytest
import tensorflow as tf

from pretraining.optimizer_config import OptimizerConfig
from pretraining.optimizers import (GooglePolynomialDecay, WarmupLinearDecay, create_schedule,
                                    factory)


def _google_rate(init_lr, step, total, warmup, end=0.0, power=1.0):
    """Google's optimization.create_optimizer, with TF1's own polynomial_decay."""
    decayed = float(tf.compat.v1.train.polynomial_decay(
        init_lr, step, total, end_learning_rate=end, power=power, cycle=False)())
    if step < warmup:
        return init_lr * step / warmup
    return decayed


@pytest.mark.parametrize("warmup,end,power", [(10, 0.0, 1.0), (0, 0.0, 1.0), (25, 1e-5, 2.0)])
def test_google_polynomial_equals_googles_formula(warmup, end, power):
    total, peak = 100, 1e-3
    schedule = GooglePolynomialDecay(peak, warmup, total, end, power=power)
    steps = list(range(0, 120, 3)) + [warmup, warmup - 1 if warmup else 0, total]
    ours = [float(schedule(s)) for s in steps]
    google = [_google_rate(peak, s, total, warmup, end, power) for s in steps]
    np.testing.assert_allclose(ours, google, rtol=1e-6, atol=1e-12)


def test_google_polynomial_differs_from_the_default_after_warmup():
    google = GooglePolynomialDecay(1.0, 10, 100)
    hugging_face = WarmupLinearDecay(1.0, 10, 100)
    assert float(google(10)) == pytest.approx(0.9) and float(hugging_face(10)) == 1.0
    assert float(google(5)) == float(hugging_face(5)) == pytest.approx(0.5)
    assert float(google(55)) == pytest.approx(0.45) and float(hugging_face(55)) == pytest.approx(0.5)


def test_config_builds_it_and_names_the_conventions():
    config = OptimizerConfig.from_dict({"schedule": "google_polynomial", "warmup_steps": 10,
                                        "learning_rate": 1.0, "bias_correction": False})
    schedule = create_schedule(config, 100)
    assert isinstance(schedule, GooglePolynomialDecay)
    assert float(schedule(10)) == pytest.approx(0.9)
    restored = GooglePolynomialDecay.from_config(schedule.get_config())
    assert float(restored(37)) == float(schedule(37))
    text = factory.conventions(config)
    assert "Google BERT's" in text and "bias_correction=false" in text
    default = factory.conventions(OptimizerConfig())
    assert "Hugging Face" in default and "bias_correction=true" in default
    assert "uncorrected second moment" in default
    with pytest.raises(ValueError, match="google_polynomial"):
        OptimizerConfig.from_dict({"schedule": "google"})
