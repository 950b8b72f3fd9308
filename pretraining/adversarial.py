"""Adversarial training on the word embeddings: the Fast Gradient Method (FGM).

One update with FGM (Miyato et al. 2017, "Adversarial Training Methods for
Semi-Supervised Text Classification"; config `{"method": "fgm", "epsilon": ε}`,
`train.adversarial` in pretraining, `finetune.adversarial` in fine-tuning):

1. the clean forward and backward pass: loss sums and gradients `G`;
2. `g`, the gradient of the word-embedding matrix `E`, summed over every
   replica (the same all-reduce as the update's), and `r = ε·g/‖g‖` with the
   norm over the whole matrix (`r = 0` when `g = 0`): every replica adds the
   same `r`, so the step equals one device's under any strategy;
3. `E ← E + r`, a second forward and backward pass at the perturbed
   embeddings: gradients `G'`;
4. `E` is restored from a copy taken before step 3 (bit-exact; `E + r - r`
   would not be), and the update applies `G + G'`.

The passes are whatever `forward_backward` computes: with gradient
accumulation both passes run over every micro-batch and `g` is the
accumulated gradient; under a loss scale (`mixed_float16`) `g` is scaled but
`g/‖g‖` is not. The loss sums reported are the clean pass's. In pretraining
the masked-LM output layer is tied to `E`, so the second pass's output layer
sees `E + r` too (as when the embedding layer is perturbed in a tied model).
Cost: a second forward+backward pass per update (about 2× the step time), one
all-reduce of `E`'s gradient, and one copy of `E` in memory.
"""

import keras
import tensorflow as tf

from pretraining.config import check_adversarial

WORD_EMBEDDING_PATH = "embeddings/word_embeddings/embeddings"


def word_embedding_index(variables) -> int:
    """The index in `variables` of the encoder's word-embedding matrix (the
    variable whose path ends in `embeddings/word_embeddings/embeddings`)."""
    found = [i for i, v in enumerate(variables)
             if getattr(v, "path", v.name).endswith(WORD_EMBEDDING_PATH)]
    if len(found) != 1:
        raise ValueError(f"Adversarial training perturbs the word-embedding matrix, the one "
                         f"trained variable whose path ends in {WORD_EMBEDDING_PATH!r}. "
                         f"Received: {len(found)} such variables among {len(variables)}.")
    return found[0]


def _assign(variable, value):
    """`variable.assign(value)` on every replica's copy: in a replica context
    through `merge_call` (a mirrored variable cannot be assigned per replica),
    `value` being the same on every replica."""
    variable = variable.value if isinstance(variable, keras.Variable) else variable
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: one value for every copy
        return variable.assign(value)

    def assign_everywhere(strategy, value):
        return strategy.extended.update(variable, lambda v, x: v.assign(x), args=(value,),
                                        group=False)

    return context.merge_call(assign_everywhere, args=(value,))


class FastGradientMethod:
    """Wraps a forward+backward pass into the FGM pass (see the module doc).

    Args:
        epsilon: float. The norm of the perturbation `r`. Must be > 0.
        variables: list of variables. What `forward_backward` differentiates;
            the word-embedding matrix must be one of them.
        embedding_index: int or None. Its index in `variables`. Defaults to
            None: found by path (`word_embedding_index`).

    Call arguments:
        forward_backward: callable. `forward_backward() -> (sums, grads)`:
            this replica's loss sums (dict) and its gradients for `variables`
            (before the all-reduce), differentiating the loss normalised by
            the global count.

    Returns `(sums, grads)`: the clean pass's sums and the clean plus the
    adversarial gradients, dense.

    Example:
    ```python
    fgm = FastGradientMethod(1.0, model.trainable_variables)
    sums, grads = fgm(lambda: forward_backward(batch))  # inside strategy.run
    ```
    """

    def __init__(self, epsilon: float, variables, embedding_index: int | None = None):
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be > 0. Received: epsilon={epsilon}")
        self.epsilon = float(epsilon)
        self.variables = list(variables)
        self.index = (word_embedding_index(self.variables) if embedding_index is None
                      else embedding_index)

    def perturbation(self, gradient):
        """`r = ε·g/‖g‖` of this replica's embedding gradient, `g` summed over
        the replicas first; zeros when `g` is 0. float32."""
        gradient = tf.cast(tf.convert_to_tensor(gradient), tf.float32)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            gradient = context.all_reduce("SUM", gradient)
        norm = tf.sqrt(tf.reduce_sum(tf.square(gradient)))
        return tf.math.divide_no_nan(self.epsilon * gradient, norm)

    def __call__(self, forward_backward):
        sums, grads = forward_backward()
        grads = [tf.convert_to_tensor(g) for g in grads]
        embedding = self.variables[self.index]
        clean = tf.identity(embedding)  # the exact values to restore
        perturbation = self.perturbation(grads[self.index])
        _assign(embedding, clean + tf.cast(perturbation, clean.dtype))
        _, adversarial_grads = forward_backward()
        _assign(embedding, clean)
        return sums, [g + tf.convert_to_tensor(a) for g, a in zip(grads, adversarial_grads)]


def wrap(config: dict, variables):
    """The forward+backward wrapper an adversarial `config`
    (`{"method": "fgm", "epsilon": ε}`; `{}`: off) asks for, over the trained
    `variables`: `run(forward_backward) -> (sums, grads)`."""
    config = check_adversarial(config, "adversarial")
    if not config:
        return lambda forward_backward: forward_backward()
    return FastGradientMethod(config["epsilon"], variables)
