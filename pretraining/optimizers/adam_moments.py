"""Adam's moments, shared by `AdamW` and `LAMB`: Keras Adam's slots, the
moving averages `m, v`, switchable bias correction and one per-variable rule.

    m ← m + (g - m)(1 - β1)        v ← v + (g² - v)(1 - β2)

What each optimizer does with `m, v` (AdamW's step, LAMB's trust ratio) is
its own `update_step`.
"""

import keras
import tensorflow as tf
from keras import ops


class AdamMoments(keras.optimizers.Adam):
    """Keras Adam with `bias_correction` and a per-variable rule, for subclasses.

    `variable_rule(variable)` (a subclass's one per-variable switch: AdamW's
    lazy rows, LAMB's layer adaptation) is evaluated once in `build()`;
    `rule(variable)` reads it back. `pattern_fields` names the subclass's
    extra arguments, lists of regexes over `v.path` (kept as lists, in
    `get_config`).

    Args:
        learning_rate: float or `LearningRateSchedule`. Defaults to 1e-3.
        beta_1, beta_2, epsilon: floats. Defaults to Google BERT's 0.9,
            0.999, 1e-6.
        bias_correction: bool. Divide the moments by `1 - β^t`. Defaults to True.
        **kwargs: the subclass's `pattern_fields` (lists of str, default
            none) and other `keras.optimizers.Adam` arguments, Keras's
            defaults (`amsgrad` is refused).
    """

    pattern_fields = ()

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-6, *,
                 bias_correction=True, **kwargs):
        patterns = {name: list(kwargs.pop(name, ())) for name in self.pattern_fields}
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, **kwargs)
        if self.amsgrad:
            raise ValueError(f"`amsgrad` is not supported by {type(self).__name__}. "
                             "Received: amsgrad=True")
        self.bias_correction = bool(bias_correction)
        for name, value in patterns.items():
            setattr(self, name, value)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._rules = [self.variable_rule(v) for v in variables]

    def variable_rule(self, variable) -> bool:  # pylint: disable=unused-argument
        """The subclass's per-variable switch, decided once in `build()`."""
        return False

    def rule(self, variable) -> bool:
        return self._rules[self._get_variable_index(variable)]

    def update_moments(self, gradient, variable):
        """Updates `m, v` of `variable` with a dense `gradient`; returns them."""
        index = self._get_variable_index(variable)
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        gradient = ops.cast(gradient, variable.dtype)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
        return m, v

    def get_config(self):
        config = super().get_config()
        config["bias_correction"] = self.bias_correction
        config.update({name: getattr(self, name) for name in self.pattern_fields})
        return config
