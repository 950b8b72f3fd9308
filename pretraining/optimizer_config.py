"""The `optimizer` section of an experiment (see docs/optimizers.md)."""

import dataclasses
import re

from pretraining.config_base import (Config, require_choice, require_non_negative,
                                     require_positive, require_probability)

NAMES = ("adamw", "adam", "lamb", "sgd")
SCHEDULES = ("linear", "polynomial", "google_polynomial", "cosine", "piecewise")
# Gradient transform type → (required keys, optional keys); `type` and
# `pattern` (a regex over the variable path) are allowed for every type.
TRANSFORMS = {
    "clip_by_norm": ({"max_norm"}, set()),
    "clip_by_value": ({"max_value"}, {"min_value"}),
    "noise": ({"stddev", "seed"}, {"gamma"}),
    "custom": ({"function"}, set()),
}


@dataclasses.dataclass
class OptimizerConfig(Config):
    """Optimizer, schedule, per-variable rules, gradient transforms, EMA.

    Google BERT's values (AdamW: β 0.9/0.999, ε 1e-6, decay 0.01 on rank >= 2
    variables; global-norm clipping at 1.0), with two conventions of Keras /
    Hugging Face by default (docs/optimizers.md, "Conventions"):
    `bias_correction=True` (Google's AdamWeightDecay has none: `false`) and
    `schedule="linear"`, which decays from the end of warmup (Google's decays
    from step 0, warmup replacing the first rates: `google_polynomial`).
    """

    _section = "optimizer"

    name: str = "adamw"  # adamw | adam | lamb | sgd
    learning_rate: float = 1e-4
    warmup_steps: int = 10_000
    end_learning_rate: float = 0.0
    weight_decay: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    clip_norm: float = 1.0  # global-norm clipping after the all-reduce; 0 = off
    momentum: float = 0.9  # sgd only
    bias_correction: bool = True  # Keras's Adam; False: Google's AdamWeightDecayOptimizer
    # linear | polynomial (decay from the end of warmup, as Hugging Face's) |
    # google_polynomial (Google BERT's: decay from step 0) | cosine | piecewise
    schedule: str = "linear"
    power: float = 1.0  # polynomial
    piecewise: dict = dataclasses.field(default_factory=dict)  # {step: multiplier}
    weight_decay_exclude: list = dataclasses.field(default_factory=list)  # regexes over v.path
    weight_decay_min_rank: int = 2
    layer_adaptation_exclude: list = dataclasses.field(default_factory=list)  # lamb
    lr_multipliers: dict = dataclasses.field(default_factory=dict)  # {regex: multiplier}
    layerwise_lr_decay: float = 1.0
    gradient_transforms: list = dataclasses.field(default_factory=list)
    ema_decay: float = 0.0  # 0 = off
    lookahead_steps: int = 0  # 0 = off
    lookahead_alpha: float = 0.5
    lazy_embeddings: bool = False  # adam/adamw

    def __post_init__(self):
        require_choice("optimizer.name", self.name, NAMES)
        require_choice("optimizer.schedule", self.schedule, SCHEDULES)
        require_positive(self, "learning_rate", "epsilon", "power", "layerwise_lr_decay")
        require_non_negative(self, "warmup_steps", "end_learning_rate", "weight_decay",
                             "clip_norm", "weight_decay_min_rank", "lookahead_steps",
                             prefix="optimizer.")
        require_probability(self, "beta_1", "beta_2", "momentum", "ema_decay")
        if not 0 < self.lookahead_alpha <= 1:
            raise ValueError("`optimizer.lookahead_alpha` must be in (0, 1]. "
                             f"Received: lookahead_alpha={self.lookahead_alpha}")
        if self.schedule == "piecewise" or self.piecewise:
            from pretraining.optimizers.schedules import normalize_points
            self.piecewise = normalize_points(self.piecewise, "optimizer.piecewise")
        for name in ("weight_decay_exclude", "layer_adaptation_exclude"):
            for pattern in getattr(self, name):
                _regex(name, pattern)
        for pattern, multiplier in self.lr_multipliers.items():
            _regex("lr_multipliers", pattern)
            if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) \
                    or multiplier < 0:
                raise ValueError("`optimizer.lr_multipliers` values must be numbers >= 0. "
                                 f"Received: lr_multipliers[{pattern!r}]={multiplier!r}")
        for index, spec in enumerate(self.gradient_transforms):
            _check_transform(index, spec)
        if self.lazy_embeddings and self.name not in ("adam", "adamw"):
            raise ValueError("`optimizer.lazy_embeddings` needs name 'adam' or 'adamw'. "
                             f"Received: lazy_embeddings=True, name={self.name!r}")


def _regex(field, pattern):
    if not isinstance(pattern, str):
        raise TypeError(f"`optimizer.{field}` holds regex strings. Received: {pattern!r}")
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"`optimizer.{field}` has an invalid regex {pattern!r}: {e}. "
                         "Fix the pattern (it is matched with re.search on v.path).") from None


def _number(where, value, minimum=None, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (positive and value <= 0) or (minimum is not None and value < minimum):
        bound = "> 0" if positive else f">= {minimum}" if minimum is not None else "a number"
        raise ValueError(f"`{where}` must be a number {bound}. Received: {where}={value!r}")


def _check_transform(index, spec):
    where = f"optimizer.gradient_transforms[{index}]"
    if not isinstance(spec, dict) or spec.get("type") not in TRANSFORMS:
        raise ValueError(f"`{where}` must be an object with `type` one of "
                         f"{sorted(TRANSFORMS)}. Received: {spec!r}")
    required, optional = TRANSFORMS[spec["type"]]
    missing = sorted(required - set(spec))
    unknown = sorted(set(spec) - required - optional - {"type", "pattern"})
    if missing or unknown:
        raise ValueError(f"`{where}` ({spec['type']}): missing keys {missing}, unknown keys "
                         f"{unknown}. Allowed: {sorted(required | optional | {'type', 'pattern'})}."
                         f" Received: {spec!r}")
    if spec.get("pattern") is not None:
        _regex(f"gradient_transforms[{index}].pattern", spec["pattern"])
    kind = spec["type"]
    if kind == "clip_by_norm":
        _number(f"{where}.max_norm", spec["max_norm"], positive=True)
    elif kind == "clip_by_value":
        _number(f"{where}.max_value", spec["max_value"])
        low = spec.get("min_value", -spec["max_value"])
        _number(f"{where}.min_value", low)
        if low > spec["max_value"]:
            raise ValueError(f"`{where}`: min_value must be <= max_value. "
                             f"Received: min_value={low}, max_value={spec['max_value']}")
    elif kind == "noise":
        _number(f"{where}.stddev", spec["stddev"], minimum=0)
        _number(f"{where}.gamma", spec.get("gamma", 0.0), minimum=0)
        if isinstance(spec["seed"], bool) or not isinstance(spec["seed"], int):
            raise ValueError(f"`{where}.seed` must be an int. Received: seed={spec['seed']!r}")
    elif kind == "custom":
        function = spec["function"]
        if not isinstance(function, str) or ":" not in function:
            raise ValueError(f"`{where}.function` must look like 'package.module:function'. "
                             f"Received: function={function!r}")
