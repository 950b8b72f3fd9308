"""Fine-tuning evaluation metrics in NumPy (no SciPy, no scikit-learn).

`compute_metrics(task, labels, outputs)` reports, by task:

- `single_label`: `accuracy`, `macro_f1` (the mean F1 over the classes that
  occur in the labels or the predictions, scikit-learn's default) and `mcc`
  (Matthews correlation; the multi-class form of Gorodkin 2004, equal to the
  binary formula for two classes, scikit-learn's `matthews_corrcoef`).
- `multi_label`: `micro_f1` (F1 of the true/false positives and false
  negatives pooled over every label), `macro_f1` (the mean per-label F1 over
  the labels that occur in the labels or the predictions: a label absent
  from both is left out, not counted as 0) and `exact_match` (the share of
  examples whose whole label set is right).
- `regression`: `pearson` and `spearman` (Pearson's r of the average ranks:
  tied values share the mean of their ranks).

Every metric is a float in [0, 1] ([-1, 1] for `mcc`, `pearson`, `spearman`);
an undefined ratio (0/0: no positives anywhere, a constant series) is 0.
"""

import numpy as np

# The metrics reported per task; the first is the default `finetune.select_by`.
METRICS = {"single_label": ("accuracy", "macro_f1", "mcc"),
           "multi_label": ("micro_f1", "macro_f1", "exact_match"),
           "regression": ("pearson", "spearman")}


def _ratio(numerator, denominator):
    """numerator / denominator, 0 where the denominator is 0 (elementwise)."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def _f1(true_positives, false_positives, false_negatives):
    """F1 = 2·TP / (2·TP + FP + FN), elementwise; 0 when nothing is positive."""
    return _ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives)


def accuracy(labels, predictions) -> float:
    """The share of examples whose predicted class is the label."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float(np.mean(labels == predictions)) if labels.size else 0.0


def _confusion(labels, predictions) -> np.ndarray:
    """Confusion matrix `[true class, predicted class]` over the classes that
    occur in either (their sorted order)."""
    classes, index = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    true, predicted = index[:len(labels)], index[len(labels):]
    matrix = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def macro_f1(labels, predictions) -> float:
    """Single label: the mean over classes (those in the labels or the
    predictions) of each class's one-vs-rest F1."""
    matrix = _confusion(np.asarray(labels).ravel(), np.asarray(predictions).ravel())
    if not matrix.size:
        return 0.0
    true_positives = np.diag(matrix)
    f1 = _f1(true_positives, matrix.sum(axis=0) - true_positives,
             matrix.sum(axis=1) - true_positives)
    return float(np.mean(f1))


def matthews_correlation(labels, predictions) -> float:
    """Multi-class Matthews correlation from the confusion matrix `C`:
    `(c·s - Σ_k p_k t_k) / sqrt((s² - Σ p_k²)(s² - Σ t_k²))` with `c` the
    correct count, `s` the total, `t_k`/`p_k` the true/predicted counts of k."""
    matrix = _confusion(np.asarray(labels).ravel(), np.asarray(predictions).ravel())
    matrix = matrix.astype(np.float64)
    true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    correct, total = np.trace(matrix), matrix.sum()
    numerator = correct * total - predicted_counts @ true_counts
    denominator = np.sqrt((total ** 2 - predicted_counts @ predicted_counts)
                          * (total ** 2 - true_counts @ true_counts))
    return float(_ratio(numerator, denominator))


def _label_counts(labels, predictions):
    """Per label (column) of 0/1 matrices: (TP, FP, FN)."""
    labels = np.asarray(labels) > 0.5
    predictions = np.asarray(predictions) > 0.5
    return ((labels & predictions).sum(axis=0), (~labels & predictions).sum(axis=0),
            (labels & ~predictions).sum(axis=0))


def micro_f1(labels, predictions) -> float:
    """Multi label: F1 of the TP, FP and FN summed over every label."""
    true_positives, false_positives, false_negatives = _label_counts(labels, predictions)
    return float(_f1(true_positives.sum(), false_positives.sum(), false_negatives.sum()))


def multi_label_macro_f1(labels, predictions) -> float:
    """Multi label: the mean per-label F1 over the labels that are positive
    in the labels or the predictions of at least one example."""
    true_positives, false_positives, false_negatives = _label_counts(labels, predictions)
    occurring = (true_positives + false_positives + false_negatives) > 0
    if not occurring.any():
        return 0.0
    return float(np.mean(_f1(true_positives, false_positives, false_negatives)[occurring]))


def exact_match(labels, predictions) -> float:
    """Multi label: the share of examples with every label right."""
    labels = np.asarray(labels) > 0.5
    predictions = np.asarray(predictions) > 0.5
    return float(np.mean(np.all(labels == predictions, axis=-1))) if len(labels) else 0.0


def pearson(x, y) -> float:
    """Pearson's correlation coefficient (0 when either series is constant)."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.size < 2:
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    return float(np.clip(_ratio(x @ y, np.sqrt((x @ x) * (y @ y))), -1.0, 1.0))


def average_ranks(values) -> np.ndarray:
    """Ranks 1…n of `values`, ties given the mean of the ranks they span."""
    values = np.asarray(values, np.float64).ravel()
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.concatenate([[0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1])
    ends = np.concatenate([starts[1:], [values.size]])
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean of start+1 … end
    return ranks


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks."""
    return pearson(average_ranks(x), average_ranks(y))


def predictions_from_outputs(task: str, outputs) -> np.ndarray:
    """The model's predictions from its outputs: logits `(n, num_labels)` →
    the argmax class (single label) or the labels scored > 0 (multi label:
    ZLPR's threshold, sigmoid > 0.5 for BCE); `(n, 1)` or `(n,)` → the value
    (regression). Integer class ids `(n,)` (single label) pass through."""
    outputs = np.asarray(outputs)
    if task == "single_label":
        return outputs if outputs.ndim == 1 else np.argmax(outputs, axis=-1)
    if task == "multi_label":
        return (outputs > 0).astype(np.int32)
    if task == "regression":
        return outputs.reshape(len(outputs), -1)[:, 0].astype(np.float64)
    raise ValueError(f"`task` must be one of {list(METRICS)}. Received: task={task!r}")


def compute_metrics(task: str, labels, outputs, weight=None) -> dict:
    """The task's metrics (`METRICS[task]`) as a dict of floats.

    Args:
        task: str. `single_label`, `multi_label` or `regression`.
        labels: array. Class ids `(n,)`, 0/1 labels `(n, num_labels)`, or
            values `(n,)`.
        outputs: array. The model's logits (see `predictions_from_outputs`).
        weight: array `(n,)` or None. Rows of weight 0 (an evaluation's
            padding) are left out. Defaults to None: every row counts.
    """
    if task not in METRICS:
        raise ValueError(f"`task` must be one of {list(METRICS)}. Received: task={task!r}")
    labels = np.asarray(labels)
    predictions = predictions_from_outputs(task, outputs)
    if len(labels) != len(predictions):
        raise ValueError(f"labels and outputs must have one row per example. Received: "
                         f"{len(labels)} labels, {len(predictions)} outputs.")
    if weight is not None:
        keep = np.asarray(weight).ravel() > 0
        labels, predictions = labels[keep], predictions[keep]
    if task == "single_label":
        return {"accuracy": accuracy(labels, predictions),
                "macro_f1": macro_f1(labels, predictions),
                "mcc": matthews_correlation(labels, predictions)}
    if task == "multi_label":
        return {"micro_f1": micro_f1(labels, predictions),
                "macro_f1": multi_label_macro_f1(labels, predictions),
                "exact_match": exact_match(labels, predictions)}
    return {"pearson": pearson(labels, predictions), "spearman": spearman(labels, predictions)}
