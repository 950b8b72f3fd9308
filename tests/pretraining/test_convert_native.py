"""Converting the trainer's own checkpoints: raw or EMA weights, the run's
config, weights with no Google/Hugging Face name (Conditional LayerNorm)."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from pretraining import checkpoints, convert
from pretraining.config import BertConfig
from pretraining.pretrainer import BertPretrainer
from pretraining.model import BertEncoder
from pretraining.optimizers.ema import ExponentialMovingAverage
from tests.pretraining import numpy_bert
from tests.pretraining.test_convert import _write_google_checkpoint


@pytest.fixture
def config(repo_root):
    return BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")


def _trainer_run(run_dir, config, vocab_tokens=None):
    """A run directory as the trainer leaves it: `config.json`,
    `data_manifest.json`, `checkpoints/ckpt-N` with model, optimizer, step,
    rng and EMA. Returns (raw weights, EMA averages) by path."""
    model = BertPretrainer(BertEncoder(config))
    rng = np.random.default_rng(0)
    for v in model.weights:
        v.assign(rng.normal(0, 0.1, v.shape).astype("float32"))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    ema = ExponentialMovingAverage(model.trainable_variables, decay=0.9)
    for average in ema.averages:
        average.assign(rng.normal(0, 0.1, average.shape).astype("float32"))
    step = tf.Variable(7, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step,
                                     rng=checkpoints.rng_variables(model), ema=ema)
    tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), 2,
                               checkpoint_name="ckpt").save(checkpoint_number=7)
    (run_dir / "config.json").write_text(json.dumps(
        {"model": config.to_dict(), "data": {"train_dir": "x"}, "task": "mlm"}))
    if vocab_tokens:
        (run_dir / "spm_vocab.txt").write_text("\n".join(vocab_tokens) + "\n")
        (run_dir / "data_manifest.json").write_text(json.dumps(
            {"tokenizer_file": str(run_dir / "spm_vocab.txt"), "tokenizer_kind": "wordpiece",
             "tokenizer_options": {"do_lower_case": True}}))
    raw = {v.path: v.numpy() for v in model.weights}
    averages = {v.path: a.numpy() for v, a in zip(model.trainable_variables, ema.averages)}
    return raw, averages


@pytest.mark.parametrize("use_ema", [False, True])
def test_trainer_checkpoint_to_google(config, tmp_path, use_ema):
    tokens = [f"t{i}" for i in range(config.vocab_size)]
    raw, averages = _trainer_run(tmp_path, config, tokens)
    expected = averages if use_ema else raw
    convert.convert(str(tmp_path), "native", str(tmp_path / "google"), "google", ema=use_ema)
    back = convert.load(str(tmp_path / "google"), "google")
    assert back.config == config and back.vocab.tokens == tokens
    assert set(back.weights) == set(raw)
    for path, value in back.weights.items():
        np.testing.assert_array_equal(value, expected[path], err_msg=path)


def test_ema_missing_is_an_error(config, tmp_path):
    model = BertPretrainer(BertEncoder(config))
    tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt-1"))
    (tmp_path / "bert_config.json").write_text(config.to_json())
    with pytest.raises(ValueError, match=r"--ema: .*ckpt-1 has no EMA averages"):
        convert.load(str(tmp_path / "ckpt-1"), "native", ema=True)


def test_wrong_config_for_trainer_checkpoint(config, tmp_path):
    _trainer_run(tmp_path, config)
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps(dataclasses.asdict(config) | {"intermediate_size": 48}))
    with pytest.raises(ValueError) as e:
        convert.load(str(tmp_path), "native", config_path=str(wide))
    message = str(e.value)
    assert "ckpt-7 does not hold this model's encoder (built from" in message
    assert "wide.json" in message and "(32, 64)" in message and "(32, 48)" in message, message


def test_conditional_layer_norm_extras(config, tmp_path, caplog):
    cln = dataclasses.replace(config, condition_size=4)
    raw, _ = _trainer_run(tmp_path, cln)
    extras = sorted(p for p in raw if "_dense" in p)
    assert extras  # gamma_dense / beta_dense kernels of every LayerNorm
    result = convert.convert(str(tmp_path), "native", str(tmp_path / "hf"), "hf")
    assert sorted(result.not_representable) == extras
    assert "Not representable in the hf format" in caplog.text and extras[0] in caplog.text
    assert "condition_size" in caplog.text
    # Native output keeps them, bit for bit.
    convert.convert(str(tmp_path), "native", str(tmp_path / "native"), "native")
    back = convert.load(str(tmp_path / "native"), "native")
    assert back.config == cln
    for path, value in raw.items():
        np.testing.assert_array_equal(back.weights[path], value, err_msg=path)


@pytest.mark.parametrize("heads", ["all", "encoder"])
def test_native_output_is_an_init_checkpoint(config, tmp_path, heads, caplog):
    raw, _ = _trainer_run(tmp_path, config)
    convert.convert(str(tmp_path), "native", str(tmp_path / "out"), "native", heads=heads)
    model = BertPretrainer(BertEncoder(config))
    checkpoints.load_init_checkpoint(str(tmp_path / "out"), model)
    for v in model.weights:
        if heads == "all" or not v.path.startswith("mlm/"):
            np.testing.assert_array_equal(v.numpy(), raw[v.path], err_msg=v.path)
    assert ("has no masked_lm matching this model" in caplog.text) == (heads == "encoder")


# ------------------------------------ train.init_checkpoint = Google's bert_model.ckpt
def test_init_checkpoint_reads_google_bert_model_ckpt(config, tmp_path):
    g = _write_google_checkpoint(str(tmp_path), config)  # no `checkpoint` pointer file
    model = BertPretrainer(BertEncoder(config), next_sentence=True)
    restored = checkpoints.load_init_checkpoint(str(tmp_path), model)
    assert restored == ["encoder", "masked_lm", "nsp"]
    rng = np.random.default_rng(3)
    mask = np.ones((2, 12), "int32")
    mask[1, 7:] = 0
    batch = {"input_ids": rng.integers(5, config.vocab_size, (2, 12)).astype("int32") * mask,
             "input_mask": mask, "segment_ids": np.repeat([[0] * 6 + [1] * 6], 2, 0) * mask}
    ours = np.asarray(model.encoder(batch)["sequence_output"])
    valid = mask.astype(bool)
    reference = numpy_bert.google_sequence_output(g, batch, config.num_hidden_layers,
                                                  config.num_attention_heads)
    np.testing.assert_allclose(ours[valid], reference[valid], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.masked_lm.output_bias.numpy(),
                                  g["cls/predictions/output_bias"])
    np.testing.assert_array_equal(model.nsp.kernel.numpy(),  # Google's is (2, hidden)
                                  g["cls/seq_relationship/output_weights"].T)


def test_init_checkpoint_google_of_another_config_is_one_line(config, tmp_path):
    _write_google_checkpoint(str(tmp_path), dataclasses.replace(config, intermediate_size=48))
    model = BertPretrainer(BertEncoder(config))
    with pytest.raises(ValueError) as e:
        checkpoints.load_init_checkpoint(str(tmp_path / "bert_model.ckpt.index"), model)
    message = str(e.value)
    assert "\n" not in message and message.startswith("train.init_checkpoint: ")
    assert "bert/encoder/layer_0/intermediate/dense/kernel" in message and "48" in message
