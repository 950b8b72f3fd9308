"""The pretraining losses as per-replica sums, and the counts they are divided by.

Each loss term is a sum over this replica's predictions divided by the
*global* count of predictions (all replicas, taken from the labels before the
forward pass), so the gradients summed over replicas equal one device's.
Written in `keras.ops`: the same numbers on every Keras backend.
"""

import keras
from keras import ops


def _sums(logits, labels, weights):
    """(weighted loss sum, weighted correct sum, weight sum), float32."""
    labels = ops.cast(labels, "int32")
    weights = ops.cast(weights, "float32")
    # Softmax cross-entropy written out so that the largest logit serves the
    # loss and the accuracy alike: one max and one sum over the vocabulary.
    logits32 = ops.cast(logits, "float32")
    largest = ops.max(logits32, axis=-1)
    label_logit = ops.take_along_axis(logits32, labels[..., None], axis=-1)[..., 0]
    shift = ops.stop_gradient(largest)
    log_sum = ops.log(ops.sum(ops.exp(logits32 - shift[..., None]), axis=-1)) + shift
    losses = log_sum - label_logit
    # Correct when the label's logit is the largest: argmax's answer but for
    # exact ties, without XLA's slower (value, index) reduction.
    correct = ops.cast(ops.greater_equal(label_logit, largest), "float32")
    return ops.sum(losses * weights), ops.sum(correct * weights), ops.sum(weights)


def masked_lm_sums(logits, batch):
    """Per-replica sums for the masked-LM loss and accuracy.

    Returns `(loss_sum, correct_sum, weight_sum)` as float32 scalars; the
    caller divides by the *global* weight sum (see docs/architecture.md).
    """
    return _sums(logits, batch["masked_lm_ids"], batch["masked_lm_weights"])


def next_token_weights(task, batch):
    """Which positions predict a next token: `(batch, seq-1)` float32.

    `lm`: every position whose next token is real. `seq2seq`: only positions
    whose next token is a target token (segment 1), so the source is context.
    """
    weights = ops.cast(batch["input_mask"], "float32")[:, 1:]
    if task == "seq2seq":
        weights = weights * ops.cast(ops.equal(
            ops.cast(batch["segment_ids"], "int32")[:, 1:], 1), "float32")
    return weights


def task_sums(task, outputs, batch) -> dict:
    """Per-replica loss/accuracy sums of a task (float32 scalars):
    `loss_sum`, `correct`, `weight` and, with NSP, `nsp_loss_sum`,
    `nsp_correct`, `nsp_count`."""
    if task == "mlm":
        loss_sum, correct, weight = masked_lm_sums(outputs["masked_lm_logits"], batch)
    else:
        logits = outputs["lm_logits"][:, :-1]  # position t predicts token t+1
        loss_sum, correct, weight = _sums(logits, batch["input_ids"][:, 1:],
                                          next_token_weights(task, batch))
    sums = {"loss_sum": loss_sum, "correct": correct, "weight": weight}
    if "nsp_logits" in outputs:
        labels = batch["next_sentence_labels"][:, 0]
        sums["nsp_loss_sum"], sums["nsp_correct"], sums["nsp_count"] = _sums(
            outputs["nsp_logits"], labels, ops.ones_like(labels, "float32"))
    return sums


def prediction_counts(task, batch, next_sentence=False) -> dict:
    """Per-replica counts the losses are normalised by, from the labels alone
    (so the global counts are known before the forward pass)."""
    if task == "mlm":
        counts = {"weight": ops.sum(ops.cast(batch["masked_lm_weights"], "float32"))}
    else:
        counts = {"weight": ops.sum(next_token_weights(task, batch))}
    if next_sentence:
        counts["nsp_count"] = ops.cast(ops.shape(batch["input_ids"])[0], "float32")
    return counts


def total_loss(sums: dict, global_counts: dict):
    """The loss to differentiate: each term's sum over its *global* count."""
    loss = sums["loss_sum"] / global_counts["weight"]
    if "nsp_loss_sum" in sums:
        loss = loss + sums["nsp_loss_sum"] / global_counts["nsp_count"]
    return loss
