"""AdamW with switchable bias correction and lazy embedding rows.

`bias_correction=True` is Keras's Adam (correction folded into the step size,
epsilon added to the uncorrected `sqrt(v)`). `bias_correction=False` is Google
BERT's `AdamWeightDecayOptimizer`: `m, v` moving averages, `update = m /
(sqrt(v) + eps) + wd · w`, `w -= lr · update`.

Lazy rows: for variables whose path matches `lazy_patterns` (embedding
tables), rows whose gradient is all zero keep their weights and both
moments unchanged (no momentum drift, no decay); only present rows are read
and written (`tf.gather` / scatter).
"""

import re

import keras
import tensorflow as tf
from keras import ops

from pretraining.optimizers.adam_moments import AdamMoments
from pretraining.optimizers.lookahead import Lookahead
from pretraining.optimizers.rules import PerVariableRules, variable_path

LAZY_EMBEDDINGS = (r"embeddings$",)  # Keras `Embedding` tables: `.../<name>/embeddings`


class AdamCore(AdamMoments):
    """Adam's moments plus `lazy_patterns` (the per-variable rule: lazy
    rows); the rules and Lookahead mixins of `AdamW` sit on top of it."""

    pattern_fields = ("lazy_patterns",)

    def variable_rule(self, variable) -> bool:
        """Lazy rows: a table (rank >= 2) whose path matches `lazy_patterns`."""
        return len(variable.shape) >= 2 and any(
            re.search(p, variable_path(variable)) for p in self.lazy_patterns)

    def decays_in_update(self, variable) -> bool:
        return self.rule(variable)

    def _step_size(self, lr, dtype):
        if not self.bias_correction:
            return lr
        t = ops.cast(self.iterations + 1, dtype)
        return (lr * ops.sqrt(1 - ops.power(ops.cast(self.beta_2, dtype), t))
                / (1 - ops.power(ops.cast(self.beta_1, dtype), t)))

    def update_step(self, gradient, variable, learning_rate):
        if self.rule(variable):
            return self._lazy_update(gradient, variable, learning_rate,
                                     self._get_variable_index(variable))
        lr = ops.cast(learning_rate, variable.dtype)
        m, v = self.update_moments(gradient, variable)
        step = self._step_size(lr, variable.dtype)
        self.assign_sub(variable, step * m / (ops.sqrt(v) + self.epsilon))

    def _lazy_update(self, gradient, variable, learning_rate, index):
        dtype = variable.dtype
        if isinstance(gradient, tf.IndexedSlices):
            rows, position = tf.unique(gradient.indices)
            values = tf.math.unsorted_segment_sum(gradient.values, position, tf.size(rows))
        else:
            row_axes = list(range(1, len(variable.shape)))
            present = tf.reduce_any(tf.not_equal(gradient, 0), axis=row_axes)
            rows = tf.reshape(tf.where(present), [-1])
            values = tf.gather(gradient, rows)
        values = tf.cast(values, dtype)
        lr = tf.cast(learning_rate, dtype)
        m_var, v_var = self._momentums[index], self._velocities[index]
        m = tf.gather(m_var.value, rows)
        v = tf.gather(v_var.value, rows)
        w = tf.gather(variable, rows)
        m = m + (values - m) * (1 - self.beta_1)
        v = v + (tf.square(values) - v) * (1 - self.beta_2)
        decay = self._decays[index] if hasattr(self, "_decays") else 0.0
        if decay:
            w = w - w * tf.cast(decay * lr, dtype)
        w = w - self._step_size(lr, dtype) * m / (tf.sqrt(v) + self.epsilon)
        shape = tf.shape(variable, out_type=rows.dtype)
        self.assign(m_var, tf.IndexedSlices(m, rows, shape))
        self.assign(v_var, tf.IndexedSlices(v, rows, shape))
        self.assign(variable, tf.IndexedSlices(w, rows, shape))


@keras.saving.register_keras_serializable(package="pretraining")
class AdamW(Lookahead, PerVariableRules, AdamCore):
    """Adam with decoupled, path-selected weight decay, per-variable learning
    rates, optional Google-style (uncorrected) moments, lazy embedding rows
    and Lookahead.

    Args:
        learning_rate, beta_1, beta_2, epsilon: as in `AdamMoments`: Google
            BERT's defaults 1e-3, 0.9, 0.999, 1e-6.
        weight_decay: float. Defaults to 0.01.
        bias_correction: bool. False gives Google's `AdamWeightDecayOptimizer`.
            Defaults to True.
        lazy_patterns: list of regexes over `v.path` selecting rank >= 2
            tables updated lazily. Defaults to none (`LAZY_EMBEDDINGS` selects
            every Keras `Embedding` table).
        weight_decay_exclude, weight_decay_min_rank, lr_multipliers,
            layerwise_lr_decay, num_layers: see `PerVariableRules`, with its
            defaults.
        lookahead_steps, lookahead_alpha: see `Lookahead`. Default to 0
            (off) and 0.5.
        **kwargs: other `keras.optimizers.Adam` arguments, Keras's defaults.

    Example:
    ```python
    optimizer = AdamW(1e-3, weight_decay=0.01, bias_correction=False,
                      layerwise_lr_decay=0.8)
    model.compile(optimizer=optimizer, loss="mse")
    ```
    """

    def __init__(self, *args, weight_decay=0.01, name="adamw", **kwargs):
        super().__init__(*args, weight_decay=weight_decay, name=name, **kwargs)
