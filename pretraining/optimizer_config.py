"""The `optimizer` section of an experiment."""

import dataclasses

from pretraining.config_base import Config, require_positive, require_probability


@dataclasses.dataclass
class OptimizerConfig(Config):
    """AdamW with linear warmup then linear decay (Google BERT defaults)."""

    _section = "optimizer"

    name: str = "adamw"
    learning_rate: float = 1e-4
    warmup_steps: int = 10_000
    end_learning_rate: float = 0.0
    weight_decay: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    clip_norm: float = 1.0

    def __post_init__(self):
        if self.name != "adamw":
            raise ValueError(f"`optimizer.name` must be 'adamw'. Received: name={self.name!r}")
        require_positive(self, "learning_rate", "epsilon")
        for name in ("warmup_steps", "end_learning_rate", "weight_decay", "clip_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"`optimizer.{name}` must be >= 0. "
                                 f"Received: {name}={getattr(self, name)}")
        require_probability(self, "beta_1", "beta_2")
