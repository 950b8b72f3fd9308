"""Fine-tuning losses against NumPy references, metrics against hand-computed
values."""

import numpy as np
import pytest
import tensorflow as tf

from pretraining.finetune import losses, metrics


def _zlpr_reference(labels, scores):
    """ZLPR per example, straight from the sets: log(1 + Σ_N e^s) + log(1 + Σ_P e^-s),
    each log-sum-exp by NumPy's pairwise logaddexp in float64."""
    out = []
    for y, s in zip(labels, scores.astype(np.float64)):
        negatives, positives = s[y == 0], -s[y == 1]
        out.append(np.logaddexp.reduce(np.concatenate([[0.0], negatives]))
                   + np.logaddexp.reduce(np.concatenate([[0.0], positives])))
    return np.array(out)


def test_multi_label_softmax_ce_matches_numpy():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 5)).astype(np.float32) * 3
    labels = (rng.random((6, 5)) < 0.4).astype(np.float32)
    labels[0] = 0  # no positive label
    labels[1] = 1  # no negative label
    weight = np.array([1, 1, 1, 0, 1, 2], np.float32)
    got = losses.multi_label_softmax_cross_entropy(labels, scores, weight)
    want = np.sum(_zlpr_reference(labels, scores) * weight)
    np.testing.assert_allclose(float(got), want, rtol=1e-6)
    # The rows without positives / negatives have one term only.
    np.testing.assert_allclose(
        float(losses.multi_label_softmax_cross_entropy(labels[:1], scores[:1])),
        np.log1p(np.exp(scores[0].astype(np.float64)).sum()), rtol=1e-6)
    np.testing.assert_allclose(
        float(losses.multi_label_softmax_cross_entropy(labels[1:2], scores[1:2])),
        np.log1p(np.exp(-scores[1].astype(np.float64)).sum()), rtol=1e-6)


def test_multi_label_softmax_ce_is_stable_at_1e4():
    scores = np.array([[1e4, -1e4, 3.0],    # a wrong positive-scored negative, wrong negative
                       [-1e4, 1e4, -2.0],   # all right, by far
                       [1e4, 1e4, 1e4],     # no positives: all wrong
                       [-1e4, -1e4, -1e4]], np.float32)  # no negatives: all wrong
    labels = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 0], [1, 1, 1]], np.float32)
    want = _zlpr_reference(labels, scores)
    # By hand: 1e4 + 1e4 (+ nothing measurable), ~e^-2, 1e4 + log 3, 1e4 + log 3.
    np.testing.assert_allclose(want, [2e4, np.log1p(np.exp(-2.0)), 1e4 + np.log(3), 1e4 + np.log(3)],
                               rtol=1e-12)
    scores_t = tf.constant(scores)
    with tf.GradientTape() as tape:
        tape.watch(scores_t)
        rows = [losses.multi_label_softmax_cross_entropy(labels[i:i + 1], scores_t[i:i + 1])
                for i in range(4)]
        total = tf.add_n(rows)
    np.testing.assert_allclose([float(r) for r in rows], want, rtol=1e-6)
    grad = tape.gradient(total, scores_t).numpy()
    assert np.all(np.isfinite(grad))
    # d/ds_i of log(1 + Σ_N e^s) is e^{s_i} / (1 + Σ_N e^s): row 2, three equal
    # scores of 1e4: 1/3 each; row 0: the 1e4 negative takes ~1, the positive -1.
    np.testing.assert_allclose(grad[2], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(grad[3], [-1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(grad[0], [1, -1, 0], atol=1e-6)


def test_sigmoid_bce_matches_torch_and_numpy():
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.normal(size=(4, 3)) * 4, [[1e4, -1e4, 0.0]]]).astype(np.float32)
    labels = (rng.random((5, 3)) < 0.5).astype(np.float32)
    labels[4] = [0, 1, 1]
    got = float(losses.sigmoid_binary_cross_entropy(labels, scores))
    s = scores.astype(np.float64)
    # -[y log σ(s) + (1-y) log(1-σ(s))], log σ(s) = -logaddexp(0, -s).
    reference = (labels * np.logaddexp(0, -s) + (1 - labels) * np.logaddexp(0, s)).mean(-1)
    np.testing.assert_allclose(got, reference.sum(), rtol=1e-6)
    torch = pytest.importorskip("torch")
    torch_loss = torch.nn.BCEWithLogitsLoss()(torch.tensor(scores), torch.tensor(labels))
    np.testing.assert_allclose(got / len(scores), float(torch_loss), rtol=1e-6)


def test_softmax_ce_and_mse_match_numpy():
    logits = np.array([[2.0, -1.0, 0.5], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([2, 1, 0], np.int32)
    weight = np.array([1.0, 1.0, 0.5], np.float32)
    s = logits.astype(np.float64)
    log_softmax = s - np.logaddexp.reduce(s, axis=-1, keepdims=True)
    want = -(log_softmax[np.arange(3), labels] * weight).sum()  # row 1: 2e4, by hand
    np.testing.assert_allclose(float(losses.softmax_cross_entropy(labels, logits, weight)), want,
                               rtol=1e-6)
    np.testing.assert_allclose(want, 1.5 + np.log1p(np.exp(-3.0) + np.exp(-1.5))
                               + 2e4 + 0.5 * np.log(3), rtol=1e-12)
    values = np.array([[0.5], [-2.0], [3.0]], np.float32)
    targets = np.array([1.0, -1.0, 3.0], np.float32)
    np.testing.assert_allclose(float(losses.mean_squared_error(targets, values, weight)),
                               0.25 + 1.0 + 0.0, rtol=1e-6)


def test_loss_sum_dispatch_and_errors():
    logits = np.array([[1.0, -1.0]], np.float32)
    assert float(losses.loss_sum("multi_label", [[1.0, 0.0]], logits, None, "sigmoid_bce")) == \
        pytest.approx(float(losses.sigmoid_binary_cross_entropy([[1.0, 0.0]], logits)))
    assert float(losses.loss_sum("multi_label", [[1.0, 0.0]], logits)) == pytest.approx(
        2 * np.log1p(np.exp(-1.0)))
    with pytest.raises(ValueError, match="Received: multi_label_loss='bce'"):
        losses.loss_sum("multi_label", [[1.0, 0.0]], logits, None, "bce")
    with pytest.raises(ValueError, match="Received: task='multi'"):
        losses.loss_sum("multi", [0], logits)
    np.testing.assert_array_equal(losses.predictions("multi_label", logits), [[1, 0]])
    np.testing.assert_array_equal(losses.predictions("single_label", logits), [0])


def test_single_label_metrics_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    # F1 per class: 2·1/(2+1+1), 2·2/(4+1+0), 2·1/(2+0+1); MCC from the
    # confusion matrix: c=4, s=6, t=(2,2,2), p=(2,3,1): (24-12)/sqrt((36-14)(36-12)).
    got = metrics.compute_metrics("single_label", labels, predicted)
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert got["mcc"] == pytest.approx(12 / np.sqrt(22 * 24))
    # Binary: TP=2, FN=1, TN=1, FP=1 → (2·1 - 1·1)/sqrt(3·3·2·2) = 1/6.
    assert metrics.matthews_correlation([1, 1, 1, 0, 0], [1, 1, 0, 0, 1]) == pytest.approx(1 / 6)
    assert metrics.matthews_correlation([1, 1, 1], [1, 1, 1]) == 0.0  # 0/0
    # From logits, with a padding row (weight 0) that would be wrong.
    logits = np.eye(3)[np.append(predicted, 0)] * 5.0
    weighted = metrics.compute_metrics("single_label", np.append(labels, 2), logits,
                                       weight=[1] * 6 + [0])
    assert weighted == got


def test_multi_label_metrics_by_hand():
    labels = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    predicted = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]])
    # Labels 0 and 1: F1 1; label 2: TP 0, FP 1, FN 1 → 0; label 3 never
    # occurs (left out). Pooled: TP 4, FP 1, FN 1 → 8/10. Rows 1 and 3 exact.
    got = metrics.compute_metrics("multi_label", labels, np.where(predicted, 3.0, -3.0))
    assert got == pytest.approx({"micro_f1": 0.8, "macro_f1": 2 / 3, "exact_match": 0.5})


def test_regression_metrics_by_hand():
    # x̄=2.5, ȳ=5: Σdxdy = 11, Σdx² = 5, Σdy² = 26; the ranks agree exactly.
    got = metrics.compute_metrics("regression", [1, 2, 3, 4], np.array([[2], [4], [5], [9.0]]))
    assert got == pytest.approx({"pearson": 11 / np.sqrt(130), "spearman": 1.0})
    # Ties: ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): 4.5 / sqrt(4.5·5).
    np.testing.assert_array_equal(metrics.average_ranks([1, 2, 2, 3]), [1, 2.5, 2.5, 4])
    np.testing.assert_array_equal(metrics.average_ranks([3, 1, 3, 3]), [3, 1, 3, 3])
    assert metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / np.sqrt(22.5))
    assert metrics.pearson([1, 1, 1], [1, 2, 3]) == 0.0  # constant series


def test_compute_metrics_errors():
    with pytest.raises(ValueError, match="Received: task='binary'"):
        metrics.compute_metrics("binary", [0], [0])
    with pytest.raises(ValueError, match="3 labels, 2 outputs"):
        metrics.compute_metrics("single_label", [0, 1, 1], [0, 1])
