"""Checkpoint conversion: the name table, round trips through Google's and
Hugging Face's layouts, a Google-named checkpoint against the NumPy BERT,
trainer checkpoints (raw and EMA), vocabulary surgery and the errors."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pretraining import checkpoint_names, convert
from pretraining.config import BertConfig
from pretraining.formats.bundle import Bundle, build_model
from tests.pretraining import numpy_bert


@pytest.fixture
def config(repo_root):
    return BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")


def _random_weights(model, seed=0):
    """Non-trivial values everywhere (biases, LayerNorm), as float32 arrays."""
    rng = np.random.default_rng(seed)
    weights = {}
    for v in model.weights:
        value = rng.normal(0, 0.5 if len(v.shape) == 1 else 0.1, v.shape).astype("float32")
        if v.path.endswith("gamma"):
            value += 1.0
        v.assign(value)
        weights[v.path] = value
    return weights


def _vocab_file(tmp_path, size):
    path = tmp_path / "vocab_in.txt"
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.write_text("\n".join(special + [f"tok{i}" for i in range(size - 5)]) + "\n")
    return str(path)


def _bundle(config, head=True, seed=0, vocab=None, nsp=False):
    from pretraining.formats import vocab as vocab_lib
    weights = _random_weights(build_model(config, head, nsp), seed)
    return Bundle(config, weights, vocab_lib.read(vocab) if vocab else None, "test")


def _batch(config, batch=2, seq=12, seed=3):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), "int32")
    mask[1, 7:] = 0
    segments = np.zeros((batch, seq), "int32")
    segments[:, seq // 2:] = 1
    return {"input_ids": rng.integers(5, config.vocab_size, (batch, seq)).astype("int32") * mask,
            "input_mask": mask, "segment_ids": segments * mask}


# ------------------------------------------------------------------ the table
def test_table_names_every_weight_once(config):
    paths = [v.path for v in build_model(config, head=True, nsp=True).weights]
    entries = [checkpoint_names.lookup(p) for p in paths]
    assert all(entries), [p for p, e in zip(paths, entries) if e is None]
    assert len({e.google for e in entries}) == len({e.hf for e in entries}) == len(paths)
    query = checkpoint_names.lookup("bert/layer_1/attention/query/kernel")
    assert query.google == "bert/encoder/layer_1/attention/self/query/kernel"
    assert query.hf == "bert.encoder.layer.1.attention.self.query.weight"
    assert query.hf_transpose
    assert checkpoint_names.lookup("bert/layer_0/output_layer_norm/gamma_dense/kernel") is None
    nsp = checkpoint_names.lookup("nsp/kernel")
    assert (nsp.google, nsp.hf) == ("cls/seq_relationship/output_weights",
                                    "cls.seq_relationship.weight")
    assert nsp.google_transpose and nsp.hf_transpose and not query.google_transpose


# ------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", ["google", "hf", "native"])
@pytest.mark.parametrize("heads", ["all", "encoder", "nsp"])
def test_round_trip_is_bit_identical(config, tmp_path, fmt, heads):
    vocab = _vocab_file(tmp_path, config.vocab_size)
    bundle = _bundle(config, head=heads != "encoder", vocab=vocab, nsp=heads == "nsp")
    out = str(tmp_path / fmt)
    result = convert.save(bundle, out, fmt)
    assert result.head == (heads != "encoder") and result.not_representable == []
    back = convert.load(out, fmt)
    assert back.config == config
    assert list(back.weights) == list(bundle.weights)
    for path, value in bundle.weights.items():
        assert back.weights[path].dtype == np.float32
        np.testing.assert_array_equal(back.weights[path], value, err_msg=path)
    assert back.vocab.tokens == bundle.vocab.tokens


def test_google_output_has_google_names_and_shapes(config, tmp_path):
    convert.save(_bundle(config, vocab=_vocab_file(tmp_path, config.vocab_size)),
                 str(tmp_path / "g"), "google")
    prefix = tf.train.latest_checkpoint(str(tmp_path / "g"))
    assert prefix.endswith("bert_model.ckpt")
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    assert shapes == _google_shapes(config, head=True)
    written = json.loads((tmp_path / "g" / "bert_config.json").read_text())
    from pretraining.config import GOOGLE_FIELDS
    assert sorted(written) == sorted(GOOGLE_FIELDS) and written["hidden_size"] == 32
    assert (tmp_path / "g" / "vocab.txt").read_text().split("\n")[2] == "[CLS]"


def test_relative_google_output_is_found(config, tmp_path, monkeypatch):
    """`checkpoint` names the prefix by its basename, so tf.train.latest_checkpoint
    finds it from the relative path, the absolute path and another directory."""
    monkeypatch.chdir(tmp_path)
    prefix = convert.save(_bundle(config), "out/g", "google").output
    assert tf.train.latest_checkpoint("out/g") == prefix == "out/g/bert_model.ckpt"
    assert 'model_checkpoint_path: "bert_model.ckpt"' in (tmp_path / "out/g/checkpoint"
                                                           ).read_text()
    monkeypatch.chdir(tmp_path / "out")
    assert tf.train.latest_checkpoint("g") == "g/bert_model.ckpt"
    assert tf.train.latest_checkpoint(str(tmp_path / "out/g")) == str(
        tmp_path / "out/g/bert_model.ckpt")
    convert.save(_bundle(config), str(tmp_path / "abs"), "google")
    assert tf.train.latest_checkpoint(str(tmp_path / "abs")) == str(
        tmp_path / "abs/bert_model.ckpt")


@pytest.mark.parametrize("nsp", [False, True])
def test_keras_file_round_trip(config, tmp_path, nsp):
    bundle = _bundle(config, nsp=nsp)
    convert.save(bundle, str(tmp_path / "m.keras"), "native")
    back = convert.load(str(tmp_path / "m.keras"), "native")
    assert list(back.weights) == list(bundle.weights)
    for path, value in bundle.weights.items():
        np.testing.assert_array_equal(back.weights[path], value)
    assert not convert.load(str(tmp_path / "m.keras"), "native", heads="encoder").has_nsp


# ------------------------------------- a Google checkpoint vs the NumPy BERT
def _google_shapes(config, head):
    """Google's names and shapes, written out independently of the table."""
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    shapes = {"bert/embeddings/word_embeddings": [v, h],
              "bert/embeddings/token_type_embeddings": [config.type_vocab_size, h],
              "bert/embeddings/position_embeddings": [config.max_position_embeddings, h],
              "bert/embeddings/LayerNorm/gamma": [h], "bert/embeddings/LayerNorm/beta": [h],
              "bert/pooler/dense/kernel": [h, h], "bert/pooler/dense/bias": [h]}
    for n in range(config.num_hidden_layers):
        p = f"bert/encoder/layer_{n}/"
        for name in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            shapes[p + name + "/kernel"], shapes[p + name + "/bias"] = [h, h], [h]
        shapes[p + "intermediate/dense/kernel"], shapes[p + "intermediate/dense/bias"] = [h, i], [i]
        shapes[p + "output/dense/kernel"], shapes[p + "output/dense/bias"] = [i, h], [h]
        for name in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[p + name + "/gamma"], shapes[p + name + "/beta"] = [h], [h]
    if head:
        shapes.update({"cls/predictions/transform/dense/kernel": [h, h],
                       "cls/predictions/transform/dense/bias": [h],
                       "cls/predictions/transform/LayerNorm/gamma": [h],
                       "cls/predictions/transform/LayerNorm/beta": [h],
                       "cls/predictions/output_bias": [v]})
    return shapes


def _write_google_checkpoint(directory, config, extra=None, seed=5, skip=()):
    """A checkpoint as Google's `run_pretraining.py` leaves it: weights,
    Adam slots, global_step, NSP head. Returns the arrays by name."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in _google_shapes(config, head=True).items():
        value = rng.normal(0, 0.5 if len(shape) == 1 else 0.1, shape).astype("float32")
        arrays[name] = value + (1.0 if name.endswith("gamma") else 0.0)
    h = config.hidden_size
    arrays["cls/seq_relationship/output_weights"] = rng.normal(size=(2, h)).astype("float32")
    arrays["cls/seq_relationship/output_bias"] = rng.normal(size=2).astype("float32")
    for name in [n for n in arrays if n.startswith("bert/encoder/layer_0/")]:
        arrays[name + "/adam_m"] = np.zeros_like(arrays[name])
        arrays[name + "/adam_v"] = np.zeros_like(arrays[name])
    arrays.update(extra or {})
    for name in skip:
        arrays.pop(name)
    os.makedirs(directory, exist_ok=True)
    names = sorted(arrays)
    tensors = [tf.constant(arrays[n]) for n in names] + [tf.constant(1000, tf.int64)]
    prefix = os.path.join(directory, "bert_model.ckpt")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names + ["global_step"],
                      shape_and_slices=[""] * (len(names) + 1), tensors=tensors)
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(dataclasses.asdict(config) | {"directionality": "bidi"}, f)
    return arrays


def test_google_checkpoint_matches_numpy_bert(config, tmp_path, caplog):
    g = _write_google_checkpoint(str(tmp_path / "google"), config)
    bundle = convert.load(str(tmp_path / "google" / "bert_model.ckpt"), "google")
    assert bundle.has_nsp and "adam_m" not in caplog.text
    model = convert.to_keras(bundle)
    batch = _batch(config)
    ours = np.asarray(model.encoder(batch)["sequence_output"])
    f64 = lambda name: g[name].astype("float64")
    x = numpy_bert.google_sequence_output(g, batch, config.num_hidden_layers,
                                          config.num_attention_heads)
    valid = batch["input_mask"].astype(bool)
    np.testing.assert_allclose(ours[valid], x[valid], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        model.masked_lm.output_bias.numpy(), g["cls/predictions/output_bias"])
    # NSP as Google's run_pretraining.py computes it: pooled @ output_weights^T + bias.
    pooled = np.tanh(x[:, 0] @ f64("bert/pooler/dense/kernel") + f64("bert/pooler/dense/bias"))
    nsp = pooled @ f64("cls/seq_relationship/output_weights").T + f64(
        "cls/seq_relationship/output_bias")
    positions = np.zeros((2, 1), "int32")
    ours_nsp = np.asarray(model({**batch, "masked_lm_positions": positions})["nsp_logits"])
    np.testing.assert_allclose(ours_nsp, nsp, rtol=1e-5, atol=1e-5)


def test_google_checkpoint_without_head(config, tmp_path, caplog):
    head = [n for n in _google_shapes(config, True) if n.startswith("cls/")]
    _write_google_checkpoint(str(tmp_path / "g"), config, skip=head)
    bundle = convert.load(str(tmp_path / "g"), "google")
    assert not bundle.has_head and "no masked-LM head" in caplog.text
    # Part of a head is an error, not a silent half-load.
    _write_google_checkpoint(str(tmp_path / "h"), config, skip=head[:1])
    with pytest.raises(ValueError, match="only part of the masked-LM head"):
        convert.load(str(tmp_path / "h"), "google")
    assert convert.load(str(tmp_path / "h"), "google", heads="encoder").has_head is False


# ---------------------------------------------------------------- errors
def test_wrong_config_names_file_and_both_shapes(config, tmp_path):
    _write_google_checkpoint(str(tmp_path / "g"), config)
    wrong = tmp_path / "wide.json"
    wrong.write_text(json.dumps(dataclasses.asdict(config) | {"hidden_size": 64}))
    with pytest.raises(ValueError) as e:
        convert.load(str(tmp_path / "g"), "google", config_path=str(wrong))
    message = str(e.value)
    assert "bert_model.ckpt" in message and "wide.json" in message
    assert "bert/embeddings/word_embeddings: file (128, 32), config (128, 64)" in message


def test_unknown_tensor_is_an_error(config, tmp_path):
    _write_google_checkpoint(str(tmp_path / "g"), config,
                             extra={"bert/encoder/layer_7/output/dense/bias": np.zeros(32, "f")})
    with pytest.raises(ValueError, match=r"not in the model \(1\).*layer_7"):
        convert.load(str(tmp_path / "g"), "google")


def test_missing_files_and_unknown_formats(config, tmp_path):
    with pytest.raises(ValueError, match="Input not found: .*nowhere"):
        convert.load(str(tmp_path / "nowhere"), "google")
    with pytest.raises(ValueError, match=r"`input_format` must be one of .*'onnx'"):
        convert.load(str(tmp_path), "onnx")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"No model.safetensors \(or pytorch_model.bin\) in .*hf"):
        convert.load(str(tmp_path / "hf"), "hf")
    _write_google_checkpoint(str(tmp_path / "g"), config)
    os.remove(tmp_path / "g" / "bert_config.json")
    with pytest.raises(ValueError, match=r"No bert_config.json beside .*bert_model.ckpt"):
        convert.load(str(tmp_path / "g"), "google")
    with pytest.raises(ValueError, match="--ema .* needs input_format='native'"):
        convert.load(str(tmp_path / "g"), "google", ema=True)
    convert.save(_bundle(config), str(tmp_path / "hf"), "hf")
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps(hf_config | {
        "model_type": "roberta"}))
    with pytest.raises(ValueError, match=r"config.json: model_type must be 'bert'"):
        convert.load(str(tmp_path / "hf"), "hf")
    (tmp_path / "hf" / "config.json").write_text(json.dumps(hf_config | {"hidden_size": 64}))
    with pytest.raises(ValueError, match=r"(?s)model.safetensors does not fit the config from "
                       r".*hf/config.json.*file \(128, 32\), config \(128, 64\)"):
        convert.load(str(tmp_path / "hf"), "hf")


def test_cli_bad_flag_is_one_line(tmp_path, repo_root):
    result = subprocess.run(
        [sys.executable, "-m", "pretraining.convert", f"--input={tmp_path}",
         "--input_format=pytorch", f"--output={tmp_path}/o", "--output_format=hf"],
        cwd=repo_root, capture_output=True, text=True, timeout=60,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2
    # (TensorFlow's own C++ start-up banners aside.)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()
              and "oneDNN" not in line]
    assert errors == ["error: `--input_format` must be one of ['google', 'hf', "
                      "'native']. Received: --input_format='pytorch'"], result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------ vocabulary surgery
def test_keep_and_add_tokens(config, tmp_path):
    vocab = _vocab_file(tmp_path, config.vocab_size)
    bundle = _bundle(config, vocab=vocab)
    convert.save(bundle, str(tmp_path / "g"), "google")
    keep = [0, 1, 2, 3, 4, 40, 7, 99]
    (tmp_path / "keep.txt").write_text("\n".join(map(str, keep)) + "\n")
    result = convert.convert(str(tmp_path / "g"), "google", str(tmp_path / "kept"), "hf",
                             keep_tokens=str(tmp_path / "keep.txt"))
    assert result.config.vocab_size == len(keep)
    kept = convert.load(str(tmp_path / "kept"), "hf")
    word = "bert/embeddings/word_embeddings/embeddings"
    np.testing.assert_array_equal(kept.weights[word], bundle.weights[word][keep])
    np.testing.assert_array_equal(kept.weights["mlm/output_bias"],
                                  bundle.weights["mlm/output_bias"][keep])
    assert kept.vocab.tokens == [bundle.vocab.tokens[i] for i in keep]

    (tmp_path / "add.txt").write_text("[unused_a]\n[unused_b]\n")
    result = convert.convert(str(tmp_path / "g"), "google", str(tmp_path / "added"), "google",
                             add_tokens=str(tmp_path / "add.txt"))
    assert result.config.vocab_size == config.vocab_size + 2
    added = convert.load(str(tmp_path / "added"), "google")
    rows = added.weights[word]
    np.testing.assert_array_equal(rows[:config.vocab_size], bundle.weights[word])
    np.testing.assert_allclose(rows[-1], bundle.weights[word].mean(0), rtol=1e-6)
    assert added.weights["mlm/output_bias"].shape == (config.vocab_size + 2,)
    assert added.vocab.tokens[-2:] == ["[unused_a]", "[unused_b]"]
    assert json.loads((tmp_path / "added" / "bert_config.json").read_text())["vocab_size"] == 130

    (tmp_path / "bad.txt").write_text("3\n128\n")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 128\).*\[128\]"):
        convert.convert(str(tmp_path / "g"), "google", str(tmp_path / "x"), "google",
                        keep_tokens=str(tmp_path / "bad.txt"))


def test_sentencepiece_vocab_written_as_pieces(config, tmp_path):
    import sentencepiece
    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"the model number {i} converts checkpoints" for i in range(200)))
    sentencepiece.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(tmp_path / "spm"), vocab_size=40,
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"], minloglevel=2)
    spm = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "spm.model"))
    small = dataclasses.replace(config, vocab_size=spm.get_piece_size())
    bundle = _bundle(small, vocab=str(tmp_path / "spm.model"))
    convert.save(bundle, str(tmp_path / "g"), "google")
    pieces = (tmp_path / "g" / "vocab.txt").read_text().splitlines()
    assert pieces == [spm.id_to_piece(i) for i in range(spm.get_piece_size())]
    convert.save(bundle, str(tmp_path / "hf"), "hf")
    assert (tmp_path / "hf" / "spiece.model").read_bytes() == (
        tmp_path / "spm.model").read_bytes()
