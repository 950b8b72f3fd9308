"""The step's cheaper formulations (issue 28) against NumPy: the masked-LM
loss written out and its accuracy as a max comparison instead of argmax, LayerNorm's moments as
matrix-vector products, attention from one fused query/key/value matmul."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pretraining import layers, losses  # noqa: E402


def test_loss_and_accuracy_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 19, 50)).astype(np.float32)
    labels = rng.integers(0, 50, size=(4, 19))
    labels[0, :5] = logits[0, :5].argmax(-1)  # some correct
    weights = (rng.random((4, 19)) < 0.8).astype(np.float32)
    loss, correct, weight = losses._sums(logits, labels, weights)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected_loss = -(np.take_along_axis(log_probs, labels[..., None], -1)[..., 0] * weights).sum()
    assert float(loss) == pytest.approx(expected_loss, rel=1e-5)
    expected = ((logits.argmax(-1) == labels) * weights).sum()
    assert 0 < expected < weights.sum()  # neither all wrong nor all right
    assert float(correct) == pytest.approx(expected)
    assert float(weight) == pytest.approx(weights.sum())


def test_layer_norm_matches_numpy():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(3, 7, 64)) * 4 + 10).astype(np.float32)
    layer = layers.LayerNorm()
    layer.build(x.shape)
    layer.gamma.assign(rng.normal(size=64).astype(np.float32))
    layer.beta.assign(rng.normal(size=64).astype(np.float32))
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-12) * layer.gamma.numpy() + layer.beta.numpy()
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_fused_attention_matches_numpy():
    rng = np.random.default_rng(2)
    batch, seq, hidden, heads = 2, 5, 16, 4
    x = rng.normal(size=(batch, seq, hidden)).astype(np.float32)
    bias = np.where(rng.random((batch, 1, 1, seq)) < 0.2, -10000.0, 0.0).astype(np.float32)
    attention = layers.SelfAttention(hidden, heads, attention_probs_dropout_prob=0.0)
    attention.build(x.shape)
    for dense in (attention.query, attention.key, attention.value):
        dense.bias.assign(rng.normal(size=hidden).astype(np.float32))

    def project(dense):
        y = x @ dense.kernel.numpy() + dense.bias.numpy()
        return y.reshape(batch, seq, heads, hidden // heads).transpose(0, 2, 1, 3)

    q, k, v = (project(d) for d in (attention.query, attention.key, attention.value))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hidden // heads) + bias
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    np.testing.assert_allclose(np.asarray(attention(x, bias)), expected, rtol=1e-5, atol=1e-5)
