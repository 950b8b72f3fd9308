"""SGD with momentum plus path-based rules and Lookahead."""

import keras

from pretraining.optimizers.lookahead import Lookahead
from pretraining.optimizers.rules import PerVariableRules


@keras.saving.register_keras_serializable(package="pretraining")
class SGD(Lookahead, PerVariableRules, keras.optimizers.SGD):
    """Keras SGD (`m ← momentum · m - lr · g; w ← w + m`) with decoupled,
    path-selected weight decay, per-variable learning rates and Lookahead.

    Args:
        learning_rate: float or `LearningRateSchedule`. Defaults to `0.01`.
        momentum: float. Defaults to 0.9.
        weight_decay: float. Decoupled (`w -= w · wd · lr`). Defaults to 0.
        **kwargs: see `PerVariableRules`, `Lookahead`, `keras.optimizers.SGD`
            (their defaults).

    Example:
    ```python
    optimizer = SGD(0.1, momentum=0.9, lr_multipliers={"embeddings": 0.1})
    ```
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, weight_decay=0.0, name="sgd",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum,
                         weight_decay=weight_decay, name=name, **kwargs)
