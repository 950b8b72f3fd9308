"""Exponential moving average of weights, for eval and export.

`avg ← decay · avg + (1 - decay) · w` after each update. A `tf.Module`, so
`tf.train.Checkpoint(ema=ema)` saves the averages (only them: the model's
weights are not tracked through it). Create it inside `strategy.scope()`;
`update()` works inside the replica function of `strategy.run`, inside a
`tf.function`, or eagerly: it moves to cross-replica context with
`merge_call` and updates each device's copy from that device's weights, as
Keras's optimizers update variables.
"""

import contextlib

import keras
import tensorflow as tf


class _Refs:
    """Holds the model's variables without making them checkpoint dependencies."""

    def __init__(self, variables):
        self.items = list(variables)


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


class ExponentialMovingAverage(tf.Module):
    """Moving averages of `variables`, swapped in with `swap()`.

    Args:
        variables: list of Keras or TF variables (the model's trainable ones). Required.
        decay: float in [0, 1). Weight of the old average. Required.
        name: str. Defaults to "ema".

    Example:
    ```python
    with strategy.scope():
        ema = ExponentialMovingAverage(model.trainable_variables, decay=0.999)
    # in the train step, after optimizer.apply_gradients(...):
    ema.update()
    # eval / export with the averaged weights, raw weights restored after:
    with ema.swap():
        model.save("averaged.keras")
    checkpoint = tf.train.Checkpoint(model=model, ema=ema)
    ```
    """

    def __init__(self, variables, decay, name="ema"):
        super().__init__(name=name)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"`decay` must be in [0, 1). Received: decay={decay}")
        self.decay = float(decay)
        self._model_variables = _Refs(variables)
        with self.name_scope:
            self.averages = [
                tf.Variable(_tf_variable(v).read_value(), trainable=False,
                            name=_name(v), aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                for v in self._model_variables.items]

    def reset(self):
        """Sets every average to the current weights (e.g. after restoring
        weights that did not come with averages)."""
        for v, average in zip(self._model_variables.items, self.averages):
            average.assign(_tf_variable(v).read_value())

    def update(self):
        """One moving-average step from the current weights."""
        context = tf.distribute.get_replica_context()
        if context is None:
            return self._update(tf.distribute.get_strategy())
        return context.merge_call(self._update)

    def _update(self, strategy):
        decay = self.decay

        def update_one(average, value):
            return average.assign(decay * average + (1.0 - decay) * tf.cast(value, average.dtype))

        for v, average in zip(self._model_variables.items, self.averages):
            strategy.extended.update(average, update_one, args=(_tf_variable(v),), group=False)

    @contextlib.contextmanager
    def swap(self):
        """Context manager: averaged weights in, then the raw weights back,
        bit-identical. Call it outside `strategy.run` (cross-replica context)."""
        self._swap()
        try:
            yield self
        finally:
            self._swap()

    def _swap(self):
        for v, average in zip(self._model_variables.items, self.averages):
            v = _tf_variable(v)
            raw = tf.identity(v.read_value())
            v.assign(average.read_value())
            average.assign(raw)


def _name(variable):
    path = getattr(variable, "path", None) or variable.name.split(":")[0]
    return path.replace("/", "_")
