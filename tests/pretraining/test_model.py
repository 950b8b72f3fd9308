import keras
import numpy as np
import pytest

from pretraining.config import BertConfig
from pretraining.losses import masked_lm_sums
from pretraining.pretrainer import BertPretrainer
from pretraining.layers import TransformerLayer
from pretraining.model import BertEncoder
from tests.pretraining import numpy_bert


@pytest.fixture
def config(repo_root):
    return BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")


def _batch(config, batch=3, seq=16, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, config.vocab_size, (batch, seq)).astype("int32")
    mask = np.ones((batch, seq), "int32")
    mask[1, 10:] = 0
    mask[2, 4:] = 0
    segments = np.zeros((batch, seq), "int32")
    segments[:, seq // 2:] = 1
    return {"input_ids": ids * mask, "input_mask": mask, "segment_ids": segments * mask,
            "masked_lm_positions": rng.integers(0, 4, (batch, 5)).astype("int32")}


def _layer_weights(layer):
    get = lambda d: (d.kernel.numpy().astype("float64"), d.bias.numpy().astype("float64"))
    w = {}
    for prefix, dense in (("q", layer.attention.query), ("k", layer.attention.key),
                          ("v", layer.attention.value), ("o", layer.attention_output),
                          ("i", layer.intermediate), ("out", layer.output_dense)):
        w[f"{prefix}_kernel"], w[f"{prefix}_bias"] = get(dense)
    for prefix, norm in (("ln1", layer.attention_layer_norm), ("ln2", layer.output_layer_norm)):
        w[f"{prefix}_gamma"] = norm.gamma.numpy().astype("float64")
        w[f"{prefix}_beta"] = norm.beta.numpy().astype("float64")
    return w


def _randomise(model, seed=1):
    """Non-trivial biases and LayerNorm parameters, so the reference checks them."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(rng.normal(0, 0.5 if len(v.shape) == 1 else 0.1, v.shape).astype("float32")
                 + (1.0 if v.path.endswith("gamma") else 0.0))


def test_encoder_shapes_and_paths(config):
    encoder = BertEncoder(config)
    out = encoder(_batch(config))
    assert tuple(out["sequence_output"].shape) == (3, 16, config.hidden_size)
    assert tuple(out["pooled_output"].shape) == (3, config.hidden_size)
    paths = [v.path for v in encoder.weights]
    assert len(paths) == len(set(paths))
    assert "bert/embeddings/word_embeddings/embeddings" in paths
    assert "bert/layer_1/attention/query/kernel" in paths
    assert "bert/pooler/kernel" in paths
    # 5 embedding + 16 per layer + 2 pooler variables.
    assert len(paths) == 5 + 16 * config.num_hidden_layers + 2


def test_one_layer_matches_numpy(config):
    layer = TransformerLayer(config.hidden_size, config.num_attention_heads,
                             config.intermediate_size, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0, name="layer_0")
    layer.build((None, None, config.hidden_size))
    _randomise(layer)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 16, config.hidden_size)).astype("float32")
    mask = _batch(config)["input_mask"].astype("float32")
    bias = ((1.0 - mask[:, None, None, :]) * -10000.0).astype("float32")
    ours = np.asarray(layer(x, bias))
    ref = numpy_bert.transformer_layer(x.astype("float64"), mask, _layer_weights(layer),
                                       config.num_attention_heads)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_cached_layer_equals_the_whole_sequence(config):
    """A TransformerLayer fed a sequence in chunks through its key/value cache
    gives the whole sequence's outputs (causal mask, conditional LayerNorm)."""
    layer = TransformerLayer(config.hidden_size, config.num_attention_heads,
                             config.intermediate_size, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0, condition_size=3, name="layer_0")
    layer.build((None, None, config.hidden_size))
    _randomise(layer)
    rng = np.random.default_rng(2)
    seq, heads = 12, config.num_attention_heads
    x = rng.normal(size=(2, seq, config.hidden_size)).astype("float32")
    condition = rng.normal(size=(2, 3)).astype("float32")
    bias = np.where(np.tril(np.ones((seq, seq), bool)), 0.0, -10000.0).astype("float32")
    full = np.asarray(layer(x, bias[None, None], condition))
    cache = np.zeros((2, 2, heads, seq, config.hidden_size // heads), "float32")
    for start, end in ((0, 6), (6, 7), (7, 12)):
        out, cache = layer(x[:, start:end], bias[None, None, start:end], condition, cache=cache,
                           cache_index=np.full((2,), start, "int32"))
        np.testing.assert_allclose(np.asarray(out), full[:, start:end], rtol=1e-5, atol=1e-5)
    assert np.asarray(cache).shape == (2, 2, heads, seq, config.hidden_size // heads)


def test_encoder_matches_numpy(config):
    encoder = BertEncoder(config)
    _randomise(encoder)
    batch = _batch(config)
    ours = np.asarray(encoder(batch)["sequence_output"])
    emb = encoder.embeddings
    x = numpy_bert.embeddings(batch["input_ids"], batch["segment_ids"], {
        "word": emb.word_embeddings.embeddings.numpy().astype("float64"),
        "type": emb.token_type_embeddings.embeddings.numpy().astype("float64"),
        "position": emb.position_embeddings.embeddings.numpy().astype("float64"),
        "ln_gamma": emb.layer_norm.gamma.numpy(), "ln_beta": emb.layer_norm.beta.numpy()})
    for layer in encoder.transformer_layers:
        x = numpy_bert.transformer_layer(x, batch["input_mask"].astype("float64"),
                                         _layer_weights(layer), config.num_attention_heads)
    valid = batch["input_mask"].astype(bool)
    np.testing.assert_allclose(ours[valid], x[valid], rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_real_tokens(config):
    encoder = BertEncoder(config)
    batch = _batch(config)
    out = np.asarray(encoder(batch)["sequence_output"])
    changed = dict(batch)
    changed["input_ids"] = batch["input_ids"].copy()
    changed["input_ids"][2, 8:] = 7  # padding positions of example 2
    out2 = np.asarray(encoder(changed)["sequence_output"])
    np.testing.assert_allclose(out[2, :4], out2[2, :4], atol=1e-6)


def test_mlm_head_gathers_positions_and_ties_embeddings(config):
    model = BertPretrainer(BertEncoder(config))
    batch = _batch(config)
    logits = np.asarray(model(batch)["masked_lm_logits"])
    assert logits.shape == (3, 5, config.vocab_size)
    assert logits.dtype == np.float32
    # The head has no output matrix of its own: it reuses the word embeddings.
    head_paths = [v.path for v in model.masked_lm.weights]
    assert sorted(head_paths) == ["mlm/LayerNorm/beta", "mlm/LayerNorm/gamma",
                                  "mlm/output_bias", "mlm/transform/bias",
                                  "mlm/transform/kernel"]
    seq = np.asarray(model.encoder(batch)["sequence_output"])
    gathered = np.take_along_axis(seq, batch["masked_lm_positions"][:, :, None], axis=1)
    hidden = model.masked_lm.layer_norm(model.masked_lm.transform(gathered))
    expected = np.asarray(hidden) @ model.encoder.embeddings.word_embeddings.embeddings.numpy().T
    np.testing.assert_allclose(logits, expected + model.masked_lm.output_bias.numpy(),
                               rtol=1e-5, atol=1e-5)


def test_masked_lm_sums_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)).astype("float32")
    labels = rng.integers(0, 7, (2, 3))
    weights = np.array([[1, 1, 0], [1, 0, 0]], "float32")
    loss_sum, correct, weight = masked_lm_sums(logits, {"masked_lm_ids": labels,
                                                        "masked_lm_weights": weights})
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(loss_sum), (nll * weights).sum(), rtol=1e-5)
    assert float(correct) == ((logits.argmax(-1) == labels) * weights).sum()
    assert float(weight) == 3.0


def test_keras_save_round_trip(config, tmp_path):
    model = BertPretrainer(BertEncoder(config))
    batch = _batch(config)
    before = np.asarray(model(batch)["masked_lm_logits"])
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    after = np.asarray(restored(batch)["masked_lm_logits"])
    np.testing.assert_allclose(before, after, atol=1e-6)


def test_checkpoint_tracks_every_weight_through_the_model(config, tmp_path):
    """`tf.train.Checkpoint(model=...)` alone (no optimizer) saves every weight."""
    import tensorflow as tf
    model = BertPretrainer(BertEncoder(config))
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    names = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    saved = [n for n in names if n.startswith("model/")]
    assert len(saved) == len(model.weights), sorted(saved)


def test_dropout_rate_scale_and_determinism():
    """Hashed 16-bit dropout (outside the trainer: seed-generator words, rows
    numbered 0…63): rate quantised to 6554/65536, kept values scaled so the
    mean is unchanged, the same mask for the same seed-generator state, a new
    independent mask on the next call, no correlation between neighbouring
    elements, the two 16-bit fields of one word, or rows."""
    from pretraining.dropout import Dropout

    layer = Dropout(0.1, seed=3)
    x = np.ones((64, 128, 32), "float32")
    state = layer.seed_generator.state.numpy().copy()
    out = np.asarray(layer(x, training=True))
    p = 6554 / 65536
    dropped = (out == 0).mean()
    assert abs(dropped - p) < 0.003, dropped
    np.testing.assert_allclose(out[out != 0], 65536 / (65536 - 6554), rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.01
    following = np.asarray(layer(x, training=True))
    both = ((out == 0) & (following == 0)).mean()
    assert abs(both - p * p) < 0.002, both  # independent calls
    flat = (out == 0).reshape(-1)
    # Neighbouring counters, the two 16-bit fields of one 32-bit word (half
    # an example apart), the same position in the next row, far apart.
    for lag in (1, 2, 3, 32, 2048, 4096, flat.size // 2):
        pair = (flat[:-lag] & flat[lag:]).mean()
        assert abs(pair - p * p) < 0.002, (lag, pair)
    layer.seed_generator.state.assign(state)
    np.testing.assert_array_equal(np.asarray(layer(x, training=True)), out)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
