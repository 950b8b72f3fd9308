"""Several tasks, one encoder (`finetune.tasks`): the task id is the
Conditional LayerNorm condition (`BertConfig.condition_num_classes` = the
number of tasks, a learned embedding of `finetune.condition_size` per task;
`W_γ, W_β` start at zero, so at step 0 every task sees the plain encoder),
one head per task.

Training batches mix the tasks: the train splits are concatenated (each
task's share in proportion to its size, or to its `weight` when given, by
drawing its examples with repetition) with a `task` id per row and the labels
of every task in one float32 matrix `(n, widest)`: a class id or a value in
column 0, a multi-hot row in the first `num_labels` columns. Every head runs
on every row; each task's loss counts its own rows only (weight 0 elsewhere).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from pretraining.finetune import losses


def label_matrix(spec, labels, width: int) -> np.ndarray:
    """A task's labels as rows of the shared float32 `(n, width)` matrix."""
    labels = np.asarray(labels, np.float32)
    out = np.zeros((len(labels), width), np.float32)
    if labels.ndim == 2:
        out[:, :labels.shape[1]] = labels
    else:
        out[:, 0] = labels
    return out


def with_task(arrays: dict, task_id: int, spec, width: int) -> dict:
    """`arrays` with a `task` id column and its labels in the shared matrix."""
    out = {k: v for k, v in arrays.items() if k != "label"}
    out["task"] = np.full((len(arrays["input_ids"]),), task_id, np.int32)
    if "label" in arrays:
        out["label"] = label_matrix(spec, arrays["label"], width)
    return out


def merge_train(tasks, weights, seed: int) -> dict:
    """The tasks' train arrays in one set (module docstring); `weights`: one
    per task, all 0 for shares in proportion to the sizes."""
    width = max(t.spec.num_labels for t in tasks)
    parts = [with_task(t.train, i, t.spec, width) for i, t in enumerate(tasks)]
    sizes = np.array([len(p["input_ids"]) for p in parts])
    if any(weights):
        shares = np.asarray(weights, np.float64) / np.sum(weights)
        counts = np.maximum(1, np.round(shares * sizes.sum())).astype(int)
        rng = np.random.default_rng(seed)
        parts = [{k: v[rng.choice(len(v), n)] for k, v in p.items()}
                 for p, n in zip(parts, counts)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclasses.dataclass
class Objective:
    """The loss sum (and correct count) of a batch over one or several tasks.

    Args:
        specs: list of `labelled.LabelSpec`. One per head. Required.
        multi_label_loss: str. `finetune.multi_label_loss`. Required.
    """

    specs: list
    multi_label_loss: str

    def __call__(self, batch, outputs):
        if len(self.specs) == 1:
            return self._one(self.specs[0], batch["label"], outputs["logits"], batch["weight"])
        loss_sum, correct = tf.constant(0.0), tf.constant(0.0)
        for i, spec in enumerate(self.specs):
            mine = tf.equal(tf.cast(batch["task"], tf.int32), i)
            weight = batch["weight"] * tf.cast(mine, tf.float32)
            labels = batch["label"]
            if spec.task == "single_label":
                labels = tf.where(mine, tf.cast(labels[:, 0], tf.int32), 0)
            elif spec.task == "regression":
                labels = labels[:, 0]
            else:
                labels = labels[:, :spec.num_labels]
            more_loss, more_correct = self._one(spec, labels, outputs[f"logits_{i}"], weight)
            loss_sum, correct = loss_sum + more_loss, correct + more_correct
        return loss_sum, correct

    def _one(self, spec, labels, logits, weight):
        loss_sum = losses.loss_sum(spec.task, labels, logits, weight, self.multi_label_loss)
        if spec.task != "single_label":
            return loss_sum, tf.constant(0.0)
        hits = tf.equal(losses.predictions(spec.task, logits), tf.cast(labels, tf.int32))
        return loss_sum, tf.reduce_sum(tf.cast(hits, tf.float32) * weight)
