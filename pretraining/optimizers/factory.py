"""`create_optimizer`: the experiment's `optimizer` section → a Keras optimizer.

The single factory the trainer calls. Gradient transforms and the weight EMA
are not part of the optimizer (they act on the all-reduced gradient and after
the update): see `build_gradient_transform` and `create_ema`.
"""

from absl import logging

from pretraining.optimizers.adamw import LAZY_EMBEDDINGS, AdamW
from pretraining.optimizers.ema import ExponentialMovingAverage
from pretraining.optimizers.lamb import LAMB
from pretraining.optimizers.schedules import (GooglePolynomialDecay, PiecewiseLinear,
                                              WarmupCosineDecay, WarmupLinearDecay,
                                              WarmupPolynomialDecay)
from pretraining.optimizers.sgd import SGD


def create_schedule(config, total_steps: int):
    """The learning-rate schedule of an `OptimizerConfig`, over `total_steps`
    optimizer updates. Warmup is capped at `total_steps`."""
    warmup = min(config.warmup_steps, total_steps)
    args = (config.learning_rate, warmup, total_steps, config.end_learning_rate)
    if config.schedule == "linear":
        return WarmupLinearDecay(*args)
    if config.schedule == "polynomial":
        return WarmupPolynomialDecay(*args, power=config.power)
    if config.schedule == "google_polynomial":
        return GooglePolynomialDecay(*args, power=config.power)
    if config.schedule == "cosine":
        return WarmupCosineDecay(*args)
    if config.schedule == "piecewise":
        return PiecewiseLinear(config.learning_rate, config.piecewise)
    raise ValueError(f"`optimizer.schedule` must be one of linear, polynomial, "
                     f"google_polynomial, cosine, piecewise. Received: "
                     f"schedule={config.schedule!r}")


def create_optimizer(config, total_steps: int, variables=None):
    """Builds the optimizer of an `OptimizerConfig` (not yet built: call
    `optimizer.build(variables)` in the strategy's scope).

    Args:
        config: `pretraining.config.OptimizerConfig`. Required.
        total_steps: int. Number of optimizer updates of the run (the schedule's end). Required.
        variables: the model's trainable variables (optional; the per-variable
            rules are resolved and logged when the optimizer is built). Defaults to `None`.

    Returns:
        `AdamW` (names `adamw`, and `adam` with no weight decay), `LAMB` or
        `SGD`, all plain Keras optimizers.
    """
    schedule = create_schedule(config, total_steps)
    rules = {"weight_decay": config.weight_decay,
             "weight_decay_exclude": config.weight_decay_exclude,
             "weight_decay_min_rank": config.weight_decay_min_rank,
             "lr_multipliers": config.lr_multipliers,
             "layerwise_lr_decay": config.layerwise_lr_decay,
             "lookahead_steps": config.lookahead_steps,
             "lookahead_alpha": config.lookahead_alpha}
    adam = {"beta_1": config.beta_1, "beta_2": config.beta_2, "epsilon": config.epsilon,
            "bias_correction": config.bias_correction}
    if config.name in ("adamw", "adam"):
        if config.name == "adam":
            rules["weight_decay"] = 0.0
            if config.weight_decay:
                logging.info("optimizer.name='adam': weight_decay=%g is not applied "
                             "(use 'adamw').", config.weight_decay)
        lazy = LAZY_EMBEDDINGS if config.lazy_embeddings else ()
        optimizer = AdamW(schedule, lazy_patterns=lazy, name=config.name, **adam, **rules)
    elif config.name == "lamb":
        optimizer = LAMB(schedule, layer_adaptation_exclude=config.layer_adaptation_exclude,
                         **adam, **rules)
    elif config.name == "sgd":
        optimizer = SGD(schedule, momentum=config.momentum, **rules)
    else:
        raise ValueError("`optimizer.name` must be one of adamw, adam, lamb, sgd. "
                         f"Received: name={config.name!r}")
    logging.info("Optimizer %s, %s schedule over %d updates, peak learning rate %g. "
                 "Conventions: %s", config.name, config.schedule, total_steps,
                 config.learning_rate, conventions(config))
    return optimizer


_SCHEDULE_CONVENTIONS = {
    "linear": "linear decay from the end of warmup (Hugging Face's "
              "get_linear_schedule_with_warmup; Google's is schedule=google_polynomial)",
    "polynomial": "polynomial decay from the end of warmup (Google's decays from step 0: "
                  "schedule=google_polynomial)",
    "google_polynomial": "Google BERT's: polynomial decay from step 0, warmup replacing "
                         "the first steps' rate",
    "cosine": "cosine decay from the end of warmup",
    "piecewise": "piecewise-linear multipliers of learning_rate",
}


def conventions(config) -> str:
    """Which convention the optimizer and schedule of an `OptimizerConfig`
    follow where frameworks differ (logged at start; docs/optimizers.md)."""
    parts = [_SCHEDULE_CONVENTIONS[config.schedule]]
    if config.name in ("adamw", "adam", "lamb"):
        where = ("to the square root of the uncorrected second moment (Keras's and Google's "
                 "way; PyTorch's AdamW adds it to the corrected one)"
                 if config.name != "lamb" else "to the square root of the (corrected) second "
                 "moment, as Google's LAMB")
        parts.insert(0, (
            "bias_correction=true (Keras's Adam; Google's AdamWeightDecay has none: "
            "bias_correction=false)" if config.bias_correction else
            "bias_correction=false (Google's AdamWeightDecay)")
            + f"; epsilon {config.epsilon:g} added {where}")
    return "; ".join(parts) + "."


def create_ema(config, variables):
    """`ExponentialMovingAverage(variables, config.ema_decay)`, or None when
    `ema_decay` is 0. Call inside the strategy's scope."""
    if not config.ema_decay:
        return None
    return ExponentialMovingAverage(variables, config.ema_decay)
