"""Learning-rate schedules counting optimizer updates (`optimizer.iterations`).

Warmup then linear / polynomial / cosine decay, and a piecewise-linear curve
given as `{step: multiplier}` points. Every class is a Keras
`LearningRateSchedule`, serialisable and usable in plain Keras code.

Two conventions for warmup + decay:
- `WarmupLinearDecay` and its subclasses decay from the *end of warmup* to
  `total_steps`, as Hugging Face's `get_linear_schedule_with_warmup`.
- `GooglePolynomialDecay` is Google BERT's `optimization.py`: the decay runs
  from step 0 to `total_steps` and warmup *replaces* the first steps' rate,
  so the rate just after warmup is already below the peak (by
  `warmup / total` for the linear decay).
Step `s` is the number of updates done before this one (Keras's
`optimizer.iterations`, Google's `global_step`): the first update uses s = 0.
"""

import math

import keras
from keras import ops


def _check_steps(warmup_steps, total_steps):
    if total_steps <= 0:
        raise ValueError(f"`total_steps` must be > 0. Received: total_steps={total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError("`warmup_steps` must be in [0, total_steps]. Received: "
                         f"warmup_steps={warmup_steps}, total_steps={total_steps}")


@keras.saving.register_keras_serializable(package="pretraining")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak_learning_rate`, then linear decay.

    `step` counts optimizer updates. At step `s`:
    `s < warmup_steps`: `peak · s / warmup_steps`;
    afterwards: `end + (peak - end) · (1 - (s - warmup) / (total - warmup))`,
    clamped to `end` once `s >= total_steps`.

    Args:
        peak_learning_rate: float. Rate reached at the end of warmup. Required.
        warmup_steps: int. Number of warmup updates. Required.
        total_steps: int. Update at which the rate reaches `end_learning_rate`. Required.
        end_learning_rate: float. Final rate. Defaults to 0.

    Example:
    ```python
    schedule = WarmupLinearDecay(1e-4, warmup_steps=100, total_steps=1000)
    float(schedule(50))  # 5e-05
    ```
    """

    def __init__(self, peak_learning_rate, warmup_steps, total_steps, end_learning_rate=0.0):
        _check_steps(warmup_steps, total_steps)
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.end_learning_rate = end_learning_rate

    def _decay(self, progress):
        """Fraction of `peak - end` left at `progress` in [0, 1]."""
        return 1.0 - progress

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = ops.cast(self.peak_learning_rate, "float32")
        end = ops.cast(self.end_learning_rate, "float32")
        warmup = ops.cast(max(self.warmup_steps, 1), "float32")
        decay_steps = ops.cast(max(self.total_steps - self.warmup_steps, 1), "float32")
        warm = peak * step / warmup
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        decayed = end + (peak - end) * self._decay(progress)
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate,
                "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "end_learning_rate": self.end_learning_rate}


@keras.saving.register_keras_serializable(package="pretraining")
class WarmupPolynomialDecay(WarmupLinearDecay):
    """Linear warmup, then `end + (peak - end) · (1 - progress)^power`.

    `progress = (s - warmup) / (total - warmup)`, clamped to [0, 1];
    `power=1` is `WarmupLinearDecay`.

    Args:
        peak_learning_rate, warmup_steps, total_steps, end_learning_rate: as
            in `WarmupLinearDecay`, with its defaults.
        power: float. Exponent of the decay, > 0. Defaults to 1.

    Example:
    ```python
    schedule = WarmupPolynomialDecay(1.0, warmup_steps=0, total_steps=10, power=2.0)
    float(schedule(5))  # 0.25
    ```
    """

    def __init__(self, peak_learning_rate, warmup_steps, total_steps, end_learning_rate=0.0,
                 power=1.0):
        super().__init__(peak_learning_rate, warmup_steps, total_steps, end_learning_rate)
        if power <= 0:
            raise ValueError(f"`power` must be > 0. Received: power={power}")
        self.power = power

    def _decay(self, progress):
        return ops.power(1.0 - progress, self.power)

    def get_config(self):
        return {**super().get_config(), "power": self.power}


@keras.saving.register_keras_serializable(package="pretraining")
class GooglePolynomialDecay(WarmupPolynomialDecay):
    """Google BERT's schedule: `end + (peak - end) · (1 - s / total)^power`
    from step 0 (`tf.train.polynomial_decay`), with `peak · s / warmup_steps`
    instead while `s < warmup_steps`.

    Unlike `WarmupPolynomialDecay`, the decay does not wait for the end of
    warmup: at `s = warmup_steps` the rate is `peak · (1 - warmup / total)`
    (power 1, end 0), the curve Google's `run_pretraining.py` follows.

    Args:
        peak_learning_rate, warmup_steps, total_steps, end_learning_rate,
            power: as in `WarmupPolynomialDecay`, with its defaults.

    Example:
    ```python
    schedule = GooglePolynomialDecay(1.0, warmup_steps=10, total_steps=100)
    float(schedule(5)), float(schedule(10)), float(schedule(50))  # 0.5, 0.9, 0.5
    ```
    """

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = ops.cast(self.peak_learning_rate, "float32")
        end = ops.cast(self.end_learning_rate, "float32")
        warm = peak * step / ops.cast(max(self.warmup_steps, 1), "float32")
        progress = ops.minimum(step, float(self.total_steps)) / float(self.total_steps)
        decayed = end + (peak - end) * self._decay(progress)
        return ops.where(step < self.warmup_steps, warm, decayed)


@keras.saving.register_keras_serializable(package="pretraining")
class WarmupCosineDecay(WarmupLinearDecay):
    """Linear warmup, then `end + (peak - end) · (1 + cos(π · progress)) / 2`.

    Args: as in `WarmupLinearDecay`, with its defaults.

    Example:
    ```python
    schedule = WarmupCosineDecay(1.0, warmup_steps=0, total_steps=10)
    float(schedule(5))  # 0.5
    ```
    """

    def _decay(self, progress):
        return 0.5 * (1.0 + ops.cos(math.pi * progress))


@keras.saving.register_keras_serializable(package="pretraining")
class PiecewiseLinear(keras.optimizers.schedules.LearningRateSchedule):
    """`learning_rate × multiplier(step)`, the multiplier interpolated linearly
    between `{step: multiplier}` points and held constant outside them.

    Args:
        learning_rate: float. Base rate the multipliers scale. Required.
        points: dict. `{step: multiplier}`, steps ints >= 0 (or strings of
            them, as JSON keys are), multipliers >= 0. Required.

    Example:
    ```python
    # Warmup over 100 updates, hold, then drop to 10% at 1000.
    schedule = PiecewiseLinear(1e-3, {0: 0.0, 100: 1.0, 900: 1.0, 1000: 0.1})
    float(schedule(50))  # 0.0005
    ```
    """

    def __init__(self, learning_rate, points):
        points = normalize_points(points, "points")
        self.learning_rate = learning_rate
        self.points = points

    def __call__(self, step):
        step = ops.cast(step, "float32")
        steps = sorted(self.points)
        values = [float(self.points[s]) for s in steps]
        multiplier = ops.cast(values[0], "float32")
        for (s0, v0), (s1, v1) in zip(zip(steps, values), zip(steps[1:], values[1:])):
            t = ops.clip((step - s0) / float(s1 - s0), 0.0, 1.0)
            segment = v0 + (v1 - v0) * t
            multiplier = ops.where(step >= s0, segment, multiplier)
        return ops.cast(self.learning_rate, "float32") * multiplier

    def get_config(self):
        return {"learning_rate": self.learning_rate,
                "points": {str(k): v for k, v in self.points.items()}}


def normalize_points(points, field="piecewise"):
    """`{step: multiplier}` with int steps (JSON gives string keys), sorted,
    validated; raises ValueError naming `field`."""
    if not isinstance(points, dict) or not points:
        raise ValueError(f"`{field}` must be a non-empty {{step: multiplier}} object. "
                         f"Received: {field}={points!r}")
    result = {}
    for key, value in points.items():
        try:
            step = int(key)
            if isinstance(key, float) or isinstance(key, bool) or step < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"`{field}` keys must be integer steps >= 0. "
                             f"Received: {field}={points!r} (key {key!r})") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"`{field}` values must be numbers >= 0. "
                             f"Received: {field}[{key!r}]={value!r}")
        if step in result:
            raise ValueError(f"`{field}` names step {step} twice. Received: {field}={points!r}")
        result[step] = float(value)
    return dict(sorted(result.items()))
