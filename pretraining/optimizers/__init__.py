"""Optimizers for pretraining, built from small pieces over Keras's public hooks.

- `schedules`: warmup + linear / polynomial / cosine decay, Google BERT's
  polynomial decay from step 0, piecewise linear.
- `rules.PerVariableRules`: path-selected weight decay, learning-rate
  multipliers, layer-wise learning-rate decay, applied inside `update_step`.
- `adam_moments.AdamMoments`: Adam's moments and bias-correction switch,
  shared by `adamw.AdamW` (lazy embedding rows) and `lamb.LAMB`; `sgd.SGD`.
- `lookahead.Lookahead`: k steps forward, one step back.
- `gradient_transforms`: clipping (global, per variable), noise, custom
  functions, applied to the all-reduced gradient.
- `ema.ExponentialMovingAverage`: weight averages with `swap()`.
- `factory.create_optimizer`: the experiment's `optimizer` section → optimizer.

See docs/optimizers.md.
"""

from pretraining.optimizers.adamw import LAZY_EMBEDDINGS, AdamW
from pretraining.optimizers.ema import ExponentialMovingAverage
from pretraining.optimizers.factory import create_ema, create_optimizer, create_schedule
from pretraining.optimizers.gradient_transforms import (GradientPipeline, add_noise,
                                                        build_gradient_transform,
                                                        clip_by_global_norm, clip_by_norm,
                                                        clip_by_value, per_variable)
from pretraining.optimizers.lamb import LAMB
from pretraining.optimizers.lookahead import Lookahead
from pretraining.optimizers.rules import (DecaySplit, PerVariableRules, lr_multipliers,
                                          split_weight_decay)
from pretraining.optimizers.schedules import (GooglePolynomialDecay, PiecewiseLinear,
                                              WarmupCosineDecay, WarmupLinearDecay,
                                              WarmupPolynomialDecay)
from pretraining.optimizers.sgd import SGD

__all__ = [
    "AdamW", "DecaySplit", "ExponentialMovingAverage", "GooglePolynomialDecay",
    "GradientPipeline", "LAMB",
    "LAZY_EMBEDDINGS", "Lookahead", "PerVariableRules", "PiecewiseLinear", "SGD",
    "WarmupCosineDecay", "WarmupLinearDecay", "WarmupPolynomialDecay", "add_noise",
    "build_gradient_transform", "clip_by_global_norm", "clip_by_norm", "clip_by_value",
    "create_ema", "create_optimizer", "create_schedule", "lr_multipliers", "per_variable",
    "split_weight_decay",
]
