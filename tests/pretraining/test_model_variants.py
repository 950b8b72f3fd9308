"""Attention-mask variants, Conditional LayerNorm, mixed precision, saving."""

import keras
import numpy as np
import pytest

from pretraining import attention_masks
from pretraining.config import BertConfig
from pretraining.pretrainer import BertPretrainer
from pretraining.model import BertEncoder

MASK = np.array([[1, 1, 1, 1, 0]])
SEGMENTS = np.array([[0, 0, 1, 1, 1]])
EXPECTED = {
    "bidirectional": [[1, 1, 1, 1, 0]] * 5,
    "causal": [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0],
               [1, 1, 1, 1, 0]],
    "unilm": [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0],
              [1, 1, 1, 1, 0]],
    "prefix": [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0],
               [1, 1, 1, 1, 0]],
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_mask_matrix(kind):
    mask = attention_masks.attention_mask(kind, MASK, SEGMENTS, prefix_length=2)
    np.testing.assert_array_equal(np.asarray(mask)[0].astype(int), EXPECTED[kind])


def test_unilm_with_longer_source():
    mask = attention_masks.unilm(np.ones((1, 5)), np.array([[0, 0, 0, 1, 1]]))
    np.testing.assert_array_equal(np.asarray(mask)[0].astype(int),
                                  [[1, 1, 1, 0, 0]] * 3 + [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])


def _config(repo_root, **fields):
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    for name, value in fields.items():
        setattr(config, name, value)
    config.__post_init__()
    return config


def _inputs(seq=10, batch=2, seed=0, vocab=128):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (batch, seq)).astype("int32")
    segments = np.zeros((batch, seq), "int32")
    segments[:, 4:] = 1
    return {"input_ids": ids, "segment_ids": segments, "input_mask": np.ones_like(ids)}


@pytest.mark.parametrize("kind, visible", [
    # (mask, for position 5: which positions may influence it)
    ("causal", set(range(6))),
    ("unilm", set(range(6))),          # source 0-3, target 4-5
    ("bidirectional", set(range(10))),
])
def test_information_flow(repo_root, kind, visible):
    """Changing token j changes the output at position 5 iff 5 may see j."""
    encoder = BertEncoder(_config(repo_root, attention_mask_type=kind))
    inputs = _inputs()
    base = np.asarray(encoder(inputs)["sequence_output"])
    for j in range(10):
        changed = {k: v.copy() for k, v in inputs.items()}
        changed["input_ids"][:, j] = (changed["input_ids"][:, j] + 1) % 128
        out = np.asarray(encoder(changed)["sequence_output"])
        moved = np.abs(out[:, 5] - base[:, 5]).max() > 1e-6
        assert moved == (j in visible), (kind, j)


def test_unilm_source_never_sees_target(repo_root):
    encoder = BertEncoder(_config(repo_root, attention_mask_type="unilm"))
    inputs = _inputs()
    base = np.asarray(encoder(inputs)["sequence_output"])
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["input_ids"][:, 4:] = 9  # the whole target
    out = np.asarray(encoder(changed)["sequence_output"])
    np.testing.assert_allclose(out[:, :4], base[:, :4], atol=1e-6)


def test_conditional_layer_norm_starts_as_the_plain_model(repo_root):
    plain = BertEncoder(_config(repo_root))
    conditional = BertEncoder(_config(repo_root, condition_size=6, condition_hidden_size=8,
                                      condition_hidden_act="tanh"))
    by_path = {v.path: v for v in conditional.weights}
    for v in plain.weights:  # a pretrained model loaded into the conditional one
        by_path[v.path].assign(v.numpy())
    extra = sorted(set(by_path) - {v.path for v in plain.weights})
    assert "bert/condition_dense/kernel" in extra
    assert "bert/layer_0/attention_layer_norm/gamma_dense/kernel" in extra
    inputs = _inputs()
    rng = np.random.default_rng(3)
    condition_a = rng.normal(size=(2, 6)).astype("float32")
    condition_b = rng.normal(size=(2, 6)).astype("float32")
    expected = np.asarray(plain(inputs)["sequence_output"])
    got = np.asarray(conditional({**inputs, "condition": condition_a})["sequence_output"])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # Once W_gamma / W_beta move, the output depends on the condition.
    rng = np.random.default_rng(4)
    for path in extra:
        if "gamma_dense" in path or "beta_dense" in path:
            by_path[path].assign(rng.normal(0, 0.1, by_path[path].shape).astype("float32"))
    out_a = np.asarray(conditional({**inputs, "condition": condition_a})["sequence_output"])
    out_b = np.asarray(conditional({**inputs, "condition": condition_b})["sequence_output"])
    assert np.abs(out_a - expected).max() > 1e-3
    assert np.abs(out_a - out_b).max() > 1e-3


def test_conditional_model_without_condition_is_an_error(repo_root):
    encoder = BertEncoder(_config(repo_root, condition_size=4))
    with pytest.raises(ValueError, match="condition_size=4"):
        encoder(_inputs())


def test_bfloat16_keeps_layer_norm_softmax_and_logits_float32(repo_root):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = BertPretrainer(BertEncoder(_config(repo_root)))
        layer = model.encoder.transformer_layers[0]
        assert layer.attention_layer_norm.compute_dtype == "float32"
        assert model.masked_lm.layer_norm.compute_dtype == "float32"
        assert layer.attention.query.compute_dtype == "bfloat16"
        inputs = dict(_inputs(), masked_lm_positions=np.zeros((2, 3), "int32"))
        logits = model(inputs)["masked_lm_logits"]
        assert logits.dtype == "float32"
        out = model.encoder(inputs)["sequence_output"]
        assert out.dtype == "bfloat16"
        assert np.all(np.isfinite(np.asarray(logits)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("fields, task", [
    ({}, "mlm"),
    ({"attention_mask_type": "causal"}, "lm"),
    ({"attention_mask_type": "unilm"}, "seq2seq"),
    ({"attention_mask_type": "prefix", "prefix_length": 3, "condition_size": 4}, "mlm"),
])
def test_keras_round_trip(repo_root, tmp_path, fields, task):
    model = BertPretrainer(BertEncoder(_config(repo_root, **fields)), task=task,
                           next_sentence=task == "mlm")
    inputs = dict(_inputs(), masked_lm_positions=np.array([[1, 2], [3, 4]], "int32"))
    if fields.get("condition_size"):
        inputs["condition"] = np.ones((2, 4), "float32")
    for v in model.weights:  # non-zero condition weights too
        v.assign(v.numpy() + 0.01)
    before = {k: np.asarray(v) for k, v in model(inputs).items()}
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    after = {k: np.asarray(v) for k, v in restored(inputs).items()}
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-6)


# float16 adds loss scaling (a GPU policy): in make test-all.
@pytest.mark.parametrize("policy", ["mixed_bfloat16",
                                    pytest.param("mixed_float16", marks=pytest.mark.extended)])
def test_mixed_precision_training_tracks_float32(mlm_data, tmp_path, policy):
    from pretraining.trainer import Trainer
    from tests.conftest import tiny_experiment

    losses = {}
    for name in ("", policy):
        experiment = tiny_experiment(mlm_data, steps=30, steps_per_loop=10, checkpoint_every=30,
                                     mixed_precision=name)
        trainer = Trainer(experiment, str(tmp_path / (name or "fp32")))
        trainer.train()
        losses[name] = [r["loss"] for r in trainer.log.records()]
        assert keras.mixed_precision.global_policy().name == "float32"  # not leaked
    assert all(np.isfinite(losses[policy]))
    assert losses[policy][-1] < losses[policy][0] - 0.3
    np.testing.assert_allclose(losses[policy], losses[""], rtol=0.05)
