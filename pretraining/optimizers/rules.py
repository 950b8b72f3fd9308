"""Per-variable rules from Keras variable paths: weight decay, learning-rate
multipliers, layer-wise learning-rate decay.

`PerVariableRules` is a mixin for any Keras optimizer: it resolves the rules
from `v.path` in `build()`, and applies them inside `update_step` (the
`variable` it receives there is the raw `tf.Variable`, found by
`self._get_variable_index`), so they work with adaptive optimizers and under
tf.distribute. Weight decay is decoupled: `w -= w · wd · lr · multiplier`
before the base update, as Keras's AdamW does.

Layer-wise decay convention (ELECTRA-style, `L` = number of encoder layers,
found as 1 + the largest `i` in a `layer_<i>/` path component):
`layer_<i>` → `decay^(L - i)`; paths with an `embeddings/` component →
`decay^(L + 1)`; everything else (pooler, heads) → 1.
"""

import dataclasses
import re

from absl import logging
from keras import ops

_LAYER = re.compile(r"(?:^|/)layer_(\d+)(?:/|$)")
_EMBEDDINGS = re.compile(r"(?:^|/)embeddings/")


def variable_path(variable) -> str:
    """Keras `v.path` (e.g. `bert/layer_0/attention/query/kernel`), else the TF name."""
    path = getattr(variable, "path", None)
    return path if path else variable.name.split(":")[0]


def matches(path: str, patterns) -> bool:
    return any(re.search(p, path) for p in patterns)


@dataclasses.dataclass
class DecaySplit:
    """Which trainable variables get weight decay."""

    decayed: list
    excluded: list


def split_weight_decay(variables, exclude=(), min_rank=2) -> DecaySplit:
    """Decays variables of rank >= `min_rank` (kernels, embeddings) unless
    their path matches a regex in `exclude`; excludes the rest (biases,
    LayerNorm gamma/beta are rank 1)."""
    decayed, excluded = [], []
    for v in variables:
        ok = len(v.shape) >= min_rank and not matches(variable_path(v), exclude)
        (decayed if ok else excluded).append(v)
    return DecaySplit(decayed, excluded)


def lr_multipliers(variables, patterns=None, layerwise_decay=1.0, num_layers=None) -> list:
    """One float per variable: the first regex of `patterns` (a dict
    `{regex: multiplier}`, in order) that matches the path, times the
    layer-wise decay factor (see module docstring)."""
    patterns = dict(patterns or {})
    paths = [variable_path(v) for v in variables]
    if num_layers is None:
        found = [int(m.group(1)) for p in paths if (m := _LAYER.search(p))]
        num_layers = max(found) + 1 if found else 0
    result = []
    for path in paths:
        multiplier = next((float(m) for p, m in patterns.items() if re.search(p, path)), 1.0)
        if layerwise_decay != 1.0:
            layer = _LAYER.search(path)
            if layer:
                multiplier *= layerwise_decay ** (num_layers - int(layer.group(1)))
            elif _EMBEDDINGS.search(path):
                multiplier *= layerwise_decay ** (num_layers + 1)
        result.append(multiplier)
    return result


class PerVariableRules:
    """Mixin adding path-based weight decay and learning-rate multipliers to a
    Keras optimizer. Put it before the base class.

    Args:
        weight_decay: float. Decoupled decay rate. Defaults to 0.
        weight_decay_exclude: list of regexes over `v.path`; matching
            variables are not decayed. Defaults to none.
        weight_decay_min_rank: int. Variables of lower rank are not decayed
            (biases, LayerNorm). Defaults to 2.
        lr_multipliers: dict `{regex: multiplier}`; the first match wins. Defaults to `None`.
        layerwise_lr_decay: float. See the module docstring. Defaults to 1.
        num_layers: int. `L` of the layer-wise decay; inferred from the paths
            if None. Defaults to `None`.
        **kwargs: passed to the base optimizer (its defaults).

    Example:
    ```python
    class RMSpropRules(PerVariableRules, keras.optimizers.RMSprop):
        pass

    optimizer = RMSpropRules(learning_rate=1e-3, weight_decay=0.01,
                             lr_multipliers={"embeddings": 0.1})
    ```
    """

    def __init__(self, *args, weight_decay=0.0, weight_decay_exclude=(),
                 weight_decay_min_rank=2, lr_multipliers=None, layerwise_lr_decay=1.0,
                 num_layers=None, **kwargs):
        # Keras would decay every variable before `update_step`, unscaled by
        # the multipliers: the decay happens in `update_step` instead.
        super().__init__(*args, weight_decay=None, **kwargs)
        if weight_decay is not None and weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay}")
        if layerwise_lr_decay <= 0:
            raise ValueError("`layerwise_lr_decay` must be > 0. "
                             f"Received: layerwise_lr_decay={layerwise_lr_decay}")
        self.decoupled_weight_decay = float(weight_decay or 0.0)
        self.weight_decay_exclude = list(weight_decay_exclude)
        self.weight_decay_min_rank = weight_decay_min_rank
        self.lr_multipliers = dict(lr_multipliers or {})
        self.layerwise_lr_decay = layerwise_lr_decay
        self.num_layers = num_layers
        for pattern in [*self.weight_decay_exclude, *self.lr_multipliers]:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"Invalid regex {pattern!r} in the optimizer's path "
                                 f"patterns: {e}") from None

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        split = split_weight_decay(variables, self.weight_decay_exclude,
                                   self.weight_decay_min_rank)
        decayed = {id(v) for v in split.decayed}
        self._decays = [self.decoupled_weight_decay if id(v) in decayed else 0.0
                        for v in variables]
        self._multipliers = lr_multipliers(variables, self.lr_multipliers,
                                           self.layerwise_lr_decay, self.num_layers)
        _log_rules(self, variables, split)

    def variable_weight_decay(self, variable) -> float:
        """The decay rate of `variable` (0 when excluded)."""
        return self._decays[self._get_variable_index(variable)]

    def decays_in_update(self, variable) -> bool:
        """True when the base class's `update_step` applies the decay itself
        (LAMB, lazy rows); then this mixin does not."""
        base = getattr(super(), "decays_in_update", None)
        return base(variable) if base else False

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        if self._multipliers[index] != 1.0:
            lr = lr * self._multipliers[index]
        decay = self._decays[index]
        if decay and not self.decays_in_update(variable):
            self.assign_sub(variable, variable * ops.cast(decay * lr, variable.dtype))
        super().update_step(gradient, variable, lr)

    def get_config(self):
        config = super().get_config()
        config.update({"weight_decay": self.decoupled_weight_decay,
                       "weight_decay_exclude": self.weight_decay_exclude,
                       "weight_decay_min_rank": self.weight_decay_min_rank,
                       "lr_multipliers": self.lr_multipliers,
                       "layerwise_lr_decay": self.layerwise_lr_decay,
                       "num_layers": self.num_layers})
        return config


def compact_paths(paths) -> str:
    """The paths joined by ", ", one entry per path repeated over layers:
    `bert/layer_{0-11}/output/kernel` (BERT-base's decay report is one short
    line, not 200 names)."""
    groups = {}  # path with "layer_*/" -> layer indices, in first-seen order
    for path in paths:
        match = re.search(r"layer_(\d+)/", path)
        key = f"{path[:match.start()]}layer_*/{path[match.end():]}" if match else path
        groups.setdefault(key, []).append(int(match.group(1)) if match else None)
    parts = []
    for key, layers in groups.items():
        if layers[0] is None:
            parts.append(key)
            continue
        layers = sorted(set(layers))
        span = (f"{{{layers[0]}-{layers[-1]}}}" if len(layers) > 1
                and layers == list(range(layers[0], layers[-1] + 1))
                else "{" + ",".join(map(str, layers)) + "}" if len(layers) > 1
                else str(layers[0]))
        parts.append(key.replace("layer_*/", f"layer_{span}/", 1))
    return ", ".join(parts)


def _log_rules(optimizer, variables, split):
    def names(vs):
        return compact_paths(variable_path(v) for v in vs) or "none"

    logging.info("%s: weight decay %.4g on %d variables: %s", optimizer.name,
                 optimizer.decoupled_weight_decay, len(split.decayed), names(split.decayed))
    logging.info("%s: excluded from weight decay (rank < %d or matching %s): %d variables: %s",
                 optimizer.name, optimizer.weight_decay_min_rank,
                 optimizer.weight_decay_exclude, len(split.excluded), names(split.excluded))
    scaled = [f"{variable_path(v)}×{m:.4g}"
              for v, m in zip(variables, optimizer._multipliers) if m != 1.0]
    if scaled:
        logging.info("%s: learning-rate multipliers: %s", optimizer.name, ", ".join(scaled))

