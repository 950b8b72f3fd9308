"""Optimizer and learning-rate schedule for pretraining.

AdamW with Google BERT's defaults, weight decay on kernels and embeddings only
(decided by variable rank, not by name patterns), and a linear warmup followed
by linear decay. Stand-alone: imports only Keras.
"""

import dataclasses

import keras
from absl import logging
from keras import ops


@keras.saving.register_keras_serializable(package="pretraining")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak_learning_rate`, then linear decay.

    `step` counts optimizer updates. At step `s`:
    `s < warmup_steps`: `peak · s / warmup_steps`;
    afterwards: `end + (peak - end) · (1 - (s - warmup) / (total - warmup))`,
    clamped to `end` once `s >= total_steps`.

    Args:
        peak_learning_rate: float. Rate reached at the end of warmup.
        warmup_steps: int. Number of warmup updates.
        total_steps: int. Update at which the rate reaches `end_learning_rate`.
        end_learning_rate: float. Final rate. Defaults to 0.

    Example:
    ```python
    schedule = WarmupLinearDecay(1e-4, warmup_steps=100, total_steps=1000)
    float(schedule(50))  # 5e-05
    ```
    """

    def __init__(self, peak_learning_rate, warmup_steps, total_steps, end_learning_rate=0.0):
        if total_steps <= 0:
            raise ValueError(f"`total_steps` must be > 0. Received: total_steps={total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError("`warmup_steps` must be in [0, total_steps]. Received: "
                             f"warmup_steps={warmup_steps}, total_steps={total_steps}")
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.end_learning_rate = end_learning_rate

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = ops.cast(self.peak_learning_rate, "float32")
        end = ops.cast(self.end_learning_rate, "float32")
        warmup = ops.cast(max(self.warmup_steps, 1), "float32")
        decay_steps = ops.cast(max(self.total_steps - self.warmup_steps, 1), "float32")
        warm = peak * step / warmup
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        decayed = end + (peak - end) * (1.0 - progress)
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate,
                "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "end_learning_rate": self.end_learning_rate}


@dataclasses.dataclass
class DecaySplit:
    """Which trainable variables get weight decay."""

    decayed: list
    excluded: list


def split_weight_decay(variables) -> DecaySplit:
    """Decays variables of rank ≥ 2 (kernels, embeddings); excludes biases and
    LayerNorm gamma/beta (rank 1), as Google's BERT does by name."""
    decayed = [v for v in variables if len(v.shape) >= 2]
    excluded = [v for v in variables if len(v.shape) < 2]
    return DecaySplit(decayed, excluded)


def create_optimizer(config, total_steps: int, variables) -> keras.optimizers.Optimizer:
    """Builds AdamW from an `OptimizerConfig`, excluding rank-1 variables from
    weight decay, and logs the split.

    Args:
        config: `pretraining.config.OptimizerConfig`.
        total_steps: int. Number of optimizer updates of the run (the schedule's end).
        variables: the model's trainable variables.
    """
    schedule = WarmupLinearDecay(config.learning_rate, min(config.warmup_steps, total_steps),
                                 total_steps, config.end_learning_rate)
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=config.weight_decay, beta_1=config.beta_1,
        beta_2=config.beta_2, epsilon=config.epsilon, name="adamw")
    split = split_weight_decay(variables)
    optimizer.exclude_from_weight_decay(var_list=split.excluded)
    logging.info("Weight decay %.4g on %d variables; excluded (rank < 2): %d variables: %s",
                 config.weight_decay, len(split.decayed), len(split.excluded),
                 ", ".join(v.path for v in split.excluded[:8])
                 + (" ..." if len(split.excluded) > 8 else ""))
    return optimizer
