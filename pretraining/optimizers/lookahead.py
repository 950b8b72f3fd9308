"""Lookahead (Zhang et al., 2019): k steps forward, 1 step back.

A mixin over any Keras optimizer, through `build` and `update_step` only. The
slow copy is refreshed from the weights at the start of every cycle of `k`
updates (where slow and fast weights are equal anyway), so weights restored
from a checkpoint after `build()` are picked up. At the end of the cycle:
`w ← slow + alpha · (w - slow)`.
"""

import tensorflow as tf
from keras import ops


class Lookahead:
    """Mixin: Lookahead around the base optimizer's update. Put it first.

    Args:
        lookahead_steps: int. `k`, updates per cycle; 0 turns it off.
            Defaults to 0.
        lookahead_alpha: float. Step size of the slow weights, in (0, 1].
            Defaults to 0.5.
        **kwargs: passed to the base optimizer (its defaults).

    Example:
    ```python
    class LookaheadAdam(Lookahead, keras.optimizers.Adam):
        pass

    optimizer = LookaheadAdam(learning_rate=1e-3, lookahead_steps=5)
    ```
    """

    def __init__(self, *args, lookahead_steps=0, lookahead_alpha=0.5, **kwargs):
        super().__init__(*args, **kwargs)
        if lookahead_steps < 0:
            raise ValueError("`lookahead_steps` must be >= 0 (0 = off). "
                             f"Received: lookahead_steps={lookahead_steps}")
        if not 0 < lookahead_alpha <= 1:
            raise ValueError("`lookahead_alpha` must be in (0, 1]. "
                             f"Received: lookahead_alpha={lookahead_alpha}")
        self.lookahead_steps = int(lookahead_steps)
        self.lookahead_alpha = float(lookahead_alpha)

    def build(self, variables):
        first_build = not self.built
        super().build(variables)
        if first_build and self.lookahead_steps:
            self._slow_weights = self.add_optimizer_variables(variables, "slow")

    def update_step(self, gradient, variable, learning_rate):
        if not self.lookahead_steps:
            return super().update_step(gradient, variable, learning_rate)
        slow = self._slow_weights[self._get_variable_index(variable)]
        k = self.lookahead_steps
        iteration = ops.cast(self.iterations, "int64")

        def refresh():
            self.assign(slow, variable)
            return tf.constant(0)

        tf.cond(tf.equal(iteration % k, 0), refresh, lambda: tf.constant(0))
        super().update_step(gradient, variable, learning_rate)

        def step_back():
            alpha = ops.cast(self.lookahead_alpha, variable.dtype)
            self.assign(variable, slow + alpha * (variable - slow))
            return tf.constant(0)

        tf.cond(tf.equal((iteration + 1) % k, 0), step_back, lambda: tf.constant(0))

    def get_config(self):
        config = super().get_config()
        config.update({"lookahead_steps": self.lookahead_steps,
                       "lookahead_alpha": self.lookahead_alpha})
        return config
