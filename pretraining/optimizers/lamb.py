"""LAMB (You et al., 2019): Adam moments, decoupled decay, then a per-variable
trust ratio `||w|| / ||update||`.

    m, v  ← Adam moments (bias-corrected when `bias_correction`)
    u     = m̂ / (sqrt(v̂) + eps) + wd · w           (wd = 0 for excluded variables)
    r     = ||w|| / ||u||  (1 if either norm is 0, or the variable is excluded
                            from layer adaptation)
    w    ← w - lr · r · u

Layer-adaptation exclusions: rank < `weight_decay_min_rank`, or a path matching
`weight_decay_exclude` or `layer_adaptation_exclude` (Google's LAMB also
reuses the decay exclusions when none are given).
"""

import keras
import tensorflow as tf
from keras import ops

from pretraining.optimizers.adam_moments import AdamMoments
from pretraining.optimizers.lookahead import Lookahead
from pretraining.optimizers.rules import PerVariableRules, matches, variable_path


class LambCore(AdamMoments):
    """The LAMB update on Adam's moments; the per-variable rule is layer adaptation."""

    pattern_fields = ("layer_adaptation_exclude",)

    def variable_rule(self, variable) -> bool:
        """Layer adaptation: rank >= `weight_decay_min_rank`, and a path
        matching neither the decay nor the adaptation exclusions."""
        min_rank = getattr(self, "weight_decay_min_rank", 2)
        patterns = [*getattr(self, "weight_decay_exclude", []), *self.layer_adaptation_exclude]
        return len(variable.shape) >= min_rank and not matches(variable_path(variable),
                                                               patterns)

    def decays_in_update(self, variable) -> bool:
        return True

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        m, v = self.update_moments(gradient, variable)
        m_hat, v_hat = m, v
        if self.bias_correction:
            t = ops.cast(self.iterations + 1, dtype)
            m_hat = m / (1 - ops.power(ops.cast(self.beta_1, dtype), t))
            v_hat = v / (1 - ops.power(ops.cast(self.beta_2, dtype), t))
        update = m_hat / (ops.sqrt(v_hat) + self.epsilon)
        decay = self._decays[index] if hasattr(self, "_decays") else 0.0
        if decay:
            update = update + ops.cast(decay, dtype) * variable
        if self.rule(variable):
            w_norm = tf.norm(variable)
            u_norm = tf.norm(update)
            ratio = tf.where((w_norm > 0) & (u_norm > 0), w_norm / tf.maximum(u_norm, 1e-30),
                             tf.ones_like(w_norm))
            lr = lr * ratio
        self.assign_sub(variable, lr * update)


@keras.saving.register_keras_serializable(package="pretraining")
class LAMB(Lookahead, PerVariableRules, LambCore):
    """LAMB with path-selected decay and layer-adaptation exclusions,
    per-variable learning rates and Lookahead.

    Args:
        layer_adaptation_exclude: list of regexes over `v.path`, on top of
            the weight-decay exclusions. Defaults to none.
        learning_rate, beta_1, beta_2, epsilon, weight_decay,
            bias_correction and the `PerVariableRules` and `Lookahead`
            arguments: as in `AdamW`, with the same defaults (1e-3, 0.9,
            0.999, 1e-6, 0.01, True, ...).

    Example:
    ```python
    optimizer = LAMB(1e-3, weight_decay=0.01)
    model.compile(optimizer=optimizer, loss="mse")
    ```
    """

    def __init__(self, *args, weight_decay=0.01, name="lamb", **kwargs):
        super().__init__(*args, weight_decay=weight_decay, name=name, **kwargs)
