"""The fine-tuning losses as weighted per-replica sums.

Every function takes `(labels, logits, weight)` and returns the float32 sum of
`weight * per_example_loss` over this replica's examples; the caller divides
by the *global* weight sum (all replicas), as the pretraining losses do, so the
summed gradients equal one device's. `weight` is 1 for real examples and 0 for
the padding rows of an evaluation's last batch (None: every row counts).

- `single_label`: softmax cross-entropy; `labels` int `(batch,)`, `logits`
  `(batch, num_labels)`.
- `multi_label`, `softmax_ce` (ZLPR, the "softmax + cross-entropy"
  generalised to several labels): for the scores `s` of one example,
  positives `P` and negatives `N`,
  `log(1 + Σ_{i∈N} e^{s_i}) + log(1 + Σ_{j∈P} e^{-s_j})`, computed as two
  log-sum-exps with a 0 logit appended (finite for scores of ±1e4). A label is
  predicted where its score is > 0. `labels` float `(batch, num_labels)` 0/1.
- `multi_label`, `sigmoid_bce`: binary cross-entropy of each label from its
  logit, averaged over the labels (Keras's and PyTorch's
  `BCEWithLogitsLoss` convention), in the stable form
  `max(s, 0) - s·y + log(1 + e^{-|s|})`.
- `regression`: squared error of the single output, `logits` `(batch, 1)`,
  `labels` float `(batch,)`.

Written in `keras.ops`; logits are cast to float32 first (mixed precision).
"""

import keras
from keras import ops

TASKS = ("single_label", "multi_label", "regression")
MULTI_LABEL_LOSSES = ("softmax_ce", "sigmoid_bce")


def _weighted_sum(per_example, weight):
    if weight is None:
        return ops.sum(per_example)
    return ops.sum(per_example * ops.cast(weight, "float32"))


def softmax_cross_entropy(labels, logits, weight=None):
    """Single label: the weighted sum of `-log softmax(logits)[label]`."""
    logits = ops.cast(logits, "float32")
    per_example = keras.losses.sparse_categorical_crossentropy(
        ops.cast(labels, "int32"), logits, from_logits=True)
    return _weighted_sum(per_example, weight)


def multi_label_softmax_cross_entropy(labels, logits, weight=None):
    """Multi-label ZLPR loss (see the module docstring): the weighted sum over
    examples of `log(1 + Σ_N e^{s}) + log(1 + Σ_P e^{-s})`. An example with no
    positive (no negative) label has only the first (second) term."""
    scores = ops.cast(logits, "float32")  # (batch, num_labels)
    positive = ops.cast(labels, "float32") > 0.5
    zeros = ops.zeros_like(scores[:, :1])  # (batch, 1): the appended 0 logit
    # Excluded labels get -inf: e^{-inf} = 0 exactly, and the 0 logit keeps
    # the maximum finite, so the log-sum-exp is exact even for all-excluded rows.
    excluded = ops.full_like(scores, float("-inf"))
    negatives = ops.concatenate([ops.where(positive, excluded, scores), zeros], axis=-1)
    positives = ops.concatenate([ops.where(positive, -scores, excluded), zeros], axis=-1)
    per_example = ops.logsumexp(negatives, axis=-1) + ops.logsumexp(positives, axis=-1)
    return _weighted_sum(per_example, weight)


def sigmoid_binary_cross_entropy(labels, logits, weight=None):
    """Multi-label alternative: each label's binary cross-entropy from its
    logit, the mean over labels, weighted sum over examples."""
    scores = ops.cast(logits, "float32")
    targets = ops.cast(labels, "float32")
    per_label = ops.relu(scores) - scores * targets + ops.log1p(ops.exp(-ops.abs(scores)))
    return _weighted_sum(ops.mean(per_label, axis=-1), weight)


def mean_squared_error(labels, logits, weight=None):
    """Regression: the weighted sum of `(logits[:, 0] - label)²` (divided by
    the global weight: the mean squared error)."""
    predictions = ops.cast(logits, "float32")[:, 0]
    return _weighted_sum(ops.square(predictions - ops.cast(labels, "float32")), weight)


def loss_sum(task: str, labels, logits, weight=None, multi_label_loss: str = "softmax_ce"):
    """The weighted loss sum of a fine-tuning `task` (`TASKS`);
    `multi_label_loss` (`MULTI_LABEL_LOSSES`) picks the multi-label loss."""
    if task == "single_label":
        return softmax_cross_entropy(labels, logits, weight)
    if task == "regression":
        return mean_squared_error(labels, logits, weight)
    if task != "multi_label":
        raise ValueError(f"`task` must be one of {list(TASKS)}. Received: task={task!r}")
    if multi_label_loss == "softmax_ce":
        return multi_label_softmax_cross_entropy(labels, logits, weight)
    if multi_label_loss == "sigmoid_bce":
        return sigmoid_binary_cross_entropy(labels, logits, weight)
    raise ValueError(f"`multi_label_loss` must be one of {list(MULTI_LABEL_LOSSES)}. "
                     f"Received: multi_label_loss={multi_label_loss!r}")


def predictions(task: str, logits):
    """What the model predicts: the argmax class `(batch,)` int32
    (single label), the 0/1 labels whose score is > 0 `(batch, num_labels)`
    int32 (multi label: the ZLPR threshold, and sigmoid > 0.5 for BCE), or
    the value `(batch,)` float32 (regression)."""
    logits = ops.cast(logits, "float32")
    if task == "single_label":
        return ops.cast(ops.argmax(logits, axis=-1), "int32")
    if task == "multi_label":
        return ops.cast(logits > 0, "int32")
    if task == "regression":
        return logits[:, 0]
    raise ValueError(f"`task` must be one of {list(TASKS)}. Received: task={task!r}")
