"""Model recipe options (`model.layer_norm_position`, `model.feed_forward`):
each against an independent NumPy forward pass, the defaults' variable paths
unchanged, the pooler and the masked-LM head reading the final LayerNorm."""

import keras
import numpy as np
import pytest

from pretraining.config import BertConfig
from pretraining.layers import TransformerLayer
from pretraining.model import BertEncoder
from pretraining.pretrainer import BertPretrainer
from tests.pretraining import numpy_bert
from tests.pretraining.test_model import _batch, _layer_weights, _randomise


def _config(repo_root, **fields):
    data = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json").to_dict()
    return BertConfig.from_dict({**data, **fields})


def _reference_layer(x, mask, w, heads, pre, glu, act=numpy_bert.gelu):
    """One encoder block in float64, written out from the formulas:
    post: LN(x + f(x)); pre: x + f(LN(x)); dense f: act(x W1) W3; GLU f:
    (act(x W1) * (x W2)) W3."""
    batch, seq, hidden = x.shape
    d = hidden // heads

    def split(t):
        return t.reshape(batch, seq, heads, d).transpose(0, 2, 1, 3)

    def attention(h):
        q, k, v = (split(h @ w[f"{n}_kernel"] + w[f"{n}_bias"]) for n in "qkv")
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
        scores = scores + (1.0 - mask[:, None, None, :]) * -10000.0
        context = (numpy_bert.softmax(scores) @ v).transpose(0, 2, 1, 3)
        return context.reshape(batch, seq, hidden) @ w["o_kernel"] + w["o_bias"]

    def feed_forward(h):
        inner = act(h @ w["i_kernel"] + w["i_bias"])
        if glu:
            inner = inner * (h @ w["lin_kernel"] + w["lin_bias"])
        return inner @ w["out_kernel"] + w["out_bias"]

    ln1 = lambda h: numpy_bert.layer_norm(h, w["ln1_gamma"], w["ln1_beta"])
    ln2 = lambda h: numpy_bert.layer_norm(h, w["ln2_gamma"], w["ln2_beta"])
    if pre:
        x = x + attention(ln1(x))
        return x + feed_forward(ln2(x))
    x = ln1(x + attention(x))
    return ln2(x + feed_forward(x))


def _weights(layer):
    w = _layer_weights(layer)
    if layer.feed_forward == "glu":
        w["lin_kernel"] = layer.intermediate_linear.kernel.numpy().astype("float64")
        w["lin_bias"] = layer.intermediate_linear.bias.numpy().astype("float64")
    return w


@pytest.mark.parametrize("position, feed_forward, act", [
    ("pre", "dense", "gelu"), ("post", "glu", "gelu"), ("pre", "glu", "gelu"),
    ("pre", "glu", "relu")])
def test_one_block_matches_numpy(repo_root, position, feed_forward, act):
    config = _config(repo_root)
    layer = TransformerLayer(config.hidden_size, config.num_attention_heads,
                             config.intermediate_size, hidden_act=act, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0, layer_norm_position=position,
                             feed_forward=feed_forward, name="layer_0")
    layer.build((None, None, config.hidden_size))
    _randomise(layer)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 16, config.hidden_size)).astype("float32")
    mask = _batch(config)["input_mask"].astype("float32")
    bias = ((1.0 - mask[:, None, None, :]) * -10000.0).astype("float32")
    ours = np.asarray(layer(x, bias))
    ref = _reference_layer(x.astype("float64"), mask, _weights(layer),
                           config.num_attention_heads, position == "pre", feed_forward == "glu",
                           numpy_bert.gelu if act == "gelu" else lambda t: np.maximum(t, 0))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    # The options change the output: the reference of the default differs.
    default = numpy_bert.transformer_layer(x.astype("float64"), mask, _layer_weights(layer),
                                           config.num_attention_heads)
    assert np.abs(ours - default).max() > 1e-2


def test_pre_layer_norm_encoder_matches_numpy(repo_root):
    """Embeddings (with their LayerNorm), pre-LN GLU blocks, the final
    LayerNorm: `sequence_output`; the pooler reads the normalised state."""
    config = _config(repo_root, layer_norm_position="pre", feed_forward="glu")
    encoder = BertEncoder(config)
    _randomise(encoder)
    batch = _batch(config)
    out = encoder(batch)
    emb = encoder.embeddings
    x = numpy_bert.embeddings(batch["input_ids"], batch["segment_ids"], {
        "word": emb.word_embeddings.embeddings.numpy().astype("float64"),
        "type": emb.token_type_embeddings.embeddings.numpy().astype("float64"),
        "position": emb.position_embeddings.embeddings.numpy().astype("float64"),
        "ln_gamma": emb.layer_norm.gamma.numpy(), "ln_beta": emb.layer_norm.beta.numpy()})
    for layer in encoder.transformer_layers:
        x = _reference_layer(x, batch["input_mask"].astype("float64"), _weights(layer),
                             config.num_attention_heads, pre=True, glu=True)
    final = encoder.final_layer_norm
    x = numpy_bert.layer_norm(x, final.gamma.numpy(), final.beta.numpy())
    valid = batch["input_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(out["sequence_output"])[valid], x[valid],
                               rtol=1e-5, atol=1e-5)
    pooled = np.tanh(x[:, 0] @ encoder.pooler.kernel.numpy() + encoder.pooler.bias.numpy())
    np.testing.assert_allclose(np.asarray(out["pooled_output"]), pooled, rtol=1e-5, atol=1e-5)


def test_variable_paths(repo_root):
    """The defaults keep Google's variable set; "pre" adds the final LayerNorm,
    "glu" one kernel and bias per block."""
    config = _config(repo_root)
    default = {v.path for v in BertEncoder(config).weights}
    assert not any("final_layer_norm" in p or "intermediate_linear" in p for p in default)
    pre = {v.path for v in BertEncoder(_config(repo_root, layer_norm_position="pre")).weights}
    assert pre - default == {"bert/final_layer_norm/gamma", "bert/final_layer_norm/beta"}
    glu = {v.path for v in BertEncoder(_config(repo_root, feed_forward="glu")).weights}
    assert glu - default == {f"bert/layer_{i}/intermediate_linear/{kind}"
                             for i in range(config.num_hidden_layers)
                             for kind in ("kernel", "bias")}
    assert default <= pre and default <= glu


def test_masked_lm_head_reads_the_final_layer_norm(repo_root):
    """The head's logits change with the final LayerNorm's scale (it sees
    its output), and equal the head applied to `sequence_output`."""
    config = _config(repo_root, layer_norm_position="pre")
    model = BertPretrainer(BertEncoder(config), task="mlm")
    _randomise(model)
    batch = _batch(config)
    logits = np.asarray(model(batch)["masked_lm_logits"])
    sequence = model.encoder(batch)["sequence_output"]
    np.testing.assert_allclose(
        np.asarray(model.masked_lm(sequence, batch["masked_lm_positions"])), logits,
        rtol=1e-5, atol=1e-5)
    final = model.encoder.final_layer_norm
    final.gamma.assign(final.gamma.numpy() * 3.0)
    assert np.abs(np.asarray(model(batch)["masked_lm_logits"]) - logits).max() > 1e-2


def test_conditional_final_layer_norm(repo_root):
    """With Conditional LayerNorm the final LayerNorm is conditional too: it
    starts as the plain pre-LN model (W_γ = W_β = 0) and its W_γ moves the output."""
    config = _config(repo_root, layer_norm_position="pre", condition_size=3)
    encoder = BertEncoder(config)
    _randomise(encoder)
    for v in encoder.weights:
        if "_dense/" in v.path:  # W_γ, W_β back to their initial zeros
            v.assign(np.zeros(v.shape, "float32"))
    plain = BertEncoder(_config(repo_root, layer_norm_position="pre"))
    ours = {v.path: v for v in encoder.weights}
    for v in plain.weights:
        v.assign(ours[v.path])
    assert "bert/final_layer_norm/gamma_dense/kernel" in ours
    batch = _batch(config)
    condition = np.ones((3, 3), "float32")
    before = np.asarray(encoder(dict(batch, condition=condition))["sequence_output"])
    np.testing.assert_allclose(before, np.asarray(plain(batch)["sequence_output"]),
                               rtol=1e-6, atol=1e-6)
    encoder.final_layer_norm.gamma_dense.kernel.assign(
        np.ones((3, config.hidden_size), "float32"))
    after = np.asarray(encoder(dict(batch, condition=condition))["sequence_output"])
    assert np.abs(after - before).max() > 1e-2


@pytest.mark.parametrize("field, value", [("layer_norm_position", "middle"),
                                          ("feed_forward", "swiglu")])
def test_unknown_values_are_refused(repo_root, field, value):
    with pytest.raises(ValueError, match=f"`{field}` must be one of"):
        _config(repo_root, **{field: value})


def test_keras_round_trip(repo_root, tmp_path):
    config = _config(repo_root, layer_norm_position="pre", feed_forward="glu")
    model = BertPretrainer(BertEncoder(config), task="mlm")
    _randomise(model)
    batch = _batch(config)
    before = np.asarray(model(batch)["masked_lm_logits"])
    path = str(tmp_path / "model.keras")
    model.save(path)
    after = np.asarray(keras.saving.load_model(path)(batch)["masked_lm_logits"])
    np.testing.assert_allclose(after, before, atol=1e-6)
