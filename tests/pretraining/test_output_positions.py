"""The masked-LM model computes its last block at the masked positions only
(`BertEncoder(output_positions=...)`): the same logits, NSP logits and
gradients as the whole sequence gives, dropout on, for every block variant."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pretraining.config import BertConfig
from pretraining.dropout import hashed_dropout, step_seed
from pretraining.model import BertEncoder
from pretraining.pretrainer import BertPretrainer

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9


def _mix32(h):
    """MurmurHash3's finaliser on uint64 arrays holding 32-bit words."""
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & MASK32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & MASK32
    return h ^ (h >> 16)


def _numpy_keep(full_shape, seed, example_index, rate=0.1):
    """The documented mask of `hashed_dropout` over whole examples, in NumPy:
    element j of an example (n elements, w = ⌈n/2⌉ words) keeps iff field
    ⌊j/w⌋ of mix32(mix32((j mod w)·φ + seed0) ^ r[b]) ≥ round(rate·65536),
    r[b] = mix32(example_index[b]·φ + seed1)."""
    seed = np.asarray(seed).astype(np.int64) & MASK32
    n = int(np.prod(full_shape))
    w = -(-n // 2)
    j = np.arange(n, dtype=np.uint64)
    counter = _mix32(((j % w) * GOLDEN + np.uint64(seed[0])) & MASK32)
    rows = _mix32((np.asarray(example_index, np.uint64) * GOLDEN + np.uint64(seed[1])) & MASK32)
    bits = _mix32(counter[None, :] ^ rows[:, None])
    field = (bits >> ((j // w) * 16)[None, :]) & 0xFFFF
    return (field >= round(rate * 65536)).reshape((-1,) + tuple(full_shape))


@pytest.mark.parametrize("full_shape, axis", [
    ((2, 6, 6), 2),   # attention probabilities (heads, queries, keys): query rows
    ((6, 8), 1),      # hidden states (positions, hidden)
    ((5, 3), 1),      # an odd element count: the last word's second field unused
])
def test_dropout_at_positions_is_the_whole_tensors_mask(full_shape, axis):
    rng = np.random.default_rng(1)
    batch = 3
    seed = np.asarray(step_seed(11, 4))
    example_index = np.array([7, 0, 12], "int32")
    length = full_shape[axis - 1]
    positions = np.stack([rng.choice(length, 3) for _ in range(batch)]).astype("int32")
    positions[0] = [0, 0, length - 1]  # duplicates and both ends
    keep = _numpy_keep(full_shape, seed, example_index)
    whole = rng.normal(size=(batch,) + full_shape).astype("float32")

    dropped = np.asarray(hashed_dropout(whole, 0.1, seed, example_index))
    scale = 65536 / (65536 - 6554)
    np.testing.assert_allclose(dropped, np.where(keep, whole * scale, 0), rtol=1e-6)

    index = positions.reshape((batch,) + (1,) * (axis - 1) + (3,) + (1,) * (len(full_shape) - axis))
    rows = np.take_along_axis(whole, index, axis=axis)
    out = np.asarray(hashed_dropout(rows, 0.1, seed, example_index, positions=positions,
                                    axis=axis, length=length))
    expected = np.where(np.take_along_axis(keep, index, axis=axis), rows * scale, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert 0 < (out == 0).mean() < 0.5


def _config(repo_root, **fields):
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.1
    for name, value in fields.items():
        setattr(config, name, value)
    config.__post_init__()
    return config


@pytest.mark.parametrize("fields", [
    {},
    {"layer_norm_position": "pre"},
    {"attention_mask_type": "unilm"},
    {"feed_forward": "glu"},
    {"condition_size": 4},
    {"num_hidden_layers": 1},
], ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "google")
def test_last_block_at_masked_positions_equals_whole_sequence(repo_root, fields):
    keras.utils.set_random_seed(0)
    encoder = BertEncoder(_config(repo_root, **fields))
    model = BertPretrainer(encoder, next_sentence=True)
    rng = np.random.default_rng(0)
    batch, seq = 3, 12
    ids = rng.integers(5, 128, (batch, seq)).astype("int32")
    mask = np.ones((batch, seq), "int32")
    mask[2, 9:] = 0
    segments = np.zeros((batch, seq), "int32")
    segments[:, 6:] = 1
    positions = np.sort(rng.integers(0, seq, (batch, 4)), axis=1).astype("int32")
    positions[1, 0] = 0
    inputs = {"input_ids": ids * mask, "segment_ids": segments * mask, "input_mask": mask,
              "masked_lm_positions": positions, "dropout_seed": step_seed(7, 3),
              "example_index": np.array([5, 9, 11], "int32")}
    if fields.get("condition_size"):
        inputs["condition"] = rng.normal(size=(batch, 4)).astype("float32")

    def whole_sequence():
        encoded = encoder(inputs, training=True)
        return {"masked_lm_logits": model.masked_lm(encoded["sequence_output"], positions),
                "nsp_logits": model.nsp(encoded["pooled_output"])}

    results = []
    for run in (lambda: model(inputs, training=True), whole_sequence):
        with tf.GradientTape() as tape:
            out = run()
            loss = (tf.reduce_sum(out["masked_lm_logits"] ** 2)
                    + tf.reduce_sum(out["nsp_logits"] * [1.0, -2.0]))
        grads = tape.gradient(loss, model.trainable_variables)
        results.append((out, [tf.convert_to_tensor(g).numpy() for g in grads]))
    (out, grads), (ref, ref_grads) = results
    assert out["masked_lm_logits"].shape == (batch, 4, 128)
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], atol=1e-6, rtol=1e-5)
    scale = max(np.abs(g).max() for g in ref_grads)
    for variable, g, r in zip(model.trainable_variables, grads, ref_grads):
        np.testing.assert_allclose(g, r, atol=1e-6 * scale, rtol=1e-4, err_msg=variable.path)
    # Dropout was on: the same call without it differs.
    still = model(inputs, training=False)["masked_lm_logits"]
    assert np.abs(np.asarray(still) - np.asarray(out["masked_lm_logits"])).max() > 1e-3
