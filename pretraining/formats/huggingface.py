"""Hugging Face BERT directories: `config.json` + `model.safetensors` (or,
where torch is installed, `pytorch_model.bin`) (+ `vocab.txt`,
`tokenizer_config.json`). Safetensors are read and written with the NumPy
API (no torch needed).

Read: `BertModel` (bare names or `bert.` prefix), `BertForMaskedLM` (no
pooler: one is initialised and left out of exports), `BertForPreTraining`
(with its NSP head), task models (their extra heads, e.g. `classifier.*`,
listed in one warning and skipped); LayerNorm `weight`/`bias` or the older
`gamma`/`beta`; a `config.json` without `model_type` when the tensors are
BERT's. Written: `BertForPreTraining` (MLM + NSP heads), `BertForMaskedLM`
(MLM head) or `BertModel`.

GELU names differ by format: Hugging Face's `"gelu"` is the exact erf form
(ours: `"gelu_exact"`), its `"gelu_new"`/`"gelu_pytorch_tanh"` the tanh
approximation (ours and Google's `"gelu"`).
"""

import dataclasses
import json
import os
import pickle

import numpy as np
from absl import logging

from pretraining import checkpoint_names
from pretraining.config import GOOGLE_FIELDS, BertConfig
from pretraining.formats import hf_tokenizer
from pretraining.formats import vocab as vocab_lib
from pretraining.formats.bundle import Bundle, check_holdable, read_by_table, read_json

WEIGHTS_NAME = "model.safetensors"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
# Hugging Face `hidden_act` → ours.
_FROM_HF_ACT = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
                "gelu_fast": "gelu", "relu": "relu"}
# Keys of an HF config.json that we read (the rest is listed once and ignored).
_READ_KEYS = frozenset(GOOGLE_FIELDS) | {"model_type", "layer_norm_eps",
                                         "position_embedding_type"}
# Normalised names of two tensors every BERT has: how a config.json without
# `model_type` is recognised.
_BERT_SIGNATURE = ("bert.embeddings.word_embeddings.weight",
                   "bert.encoder.layer.0.attention.self.query.weight")


def config_from_hf(data: dict, where: str, tensor_names=None) -> BertConfig:
    """Our `BertConfig` from a Hugging Face BERT `config.json`.

    Args:
        data: dict. The parsed `config.json`.
        where: str. The file, for messages.
        tensor_names: collection of normalised tensor names, or None. When
            the file has no `model_type` (old exports), BERT is inferred from
            these; None (a `--config` file) takes the file as BERT's.
    """
    model_type = data.get("model_type")
    if model_type is None:
        if tensor_names is not None and not all(n in tensor_names for n in _BERT_SIGNATURE):
            raise ValueError(f"{where}: no model_type, and the weights are not BERT's (no "
                             f"{_BERT_SIGNATURE[0]}): add \"model_type\": \"bert\" if they are.")
        logging.info("%s has no model_type: taken as BERT (%s).", where,
                     "from the tensor names" if tensor_names is not None else "--config")
    elif model_type != "bert":
        raise ValueError(f"{where}: model_type must be 'bert'. "
                         f"Received: model_type={model_type!r}")
    if data.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{where}: position_embedding_type must be 'absolute'. "
                         f"Received: {data['position_embedding_type']!r}")
    act = data.get("hidden_act", "gelu")
    if act not in _FROM_HF_ACT:
        raise ValueError(f"{where}: hidden_act must be one of {list(_FROM_HF_ACT)}. "
                         f"Received: hidden_act={act!r}")
    ignored = sorted(set(data) - _READ_KEYS)
    if ignored:
        logging.info("%s: keys not used by this model, ignored: %s", where, ignored)
    fields = {name: data[name] for name in GOOGLE_FIELDS if name in data}
    fields["hidden_act"] = _FROM_HF_ACT[act]
    fields["layer_norm_eps"] = data.get("layer_norm_eps", 1e-12)
    try:
        return BertConfig.from_dict(fields, where)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def read_config(path: str, input_format: str = "") -> BertConfig:
    """A `--config` file: a Google `bert_config.json` (or ours), or a Hugging
    Face `config.json`. Ours (a key only `BertConfig` has, such as
    `attention_mask_type`) and Google's are read as `BertConfig`; Hugging
    Face's is recognised by a key Google's lacks (`model_type`,
    `layer_norm_eps`, `architectures`, ...), or, with only Google's keys, by
    the name `config.json` with `--input_format=hf`. The two read `"gelu"`
    differently (tanh in Google's, exact in HF's)."""
    data = read_json(path)
    from pretraining.config import _GOOGLE_EXTRA_KEYS
    additions = {f.name for f in dataclasses.fields(BertConfig)} - set(GOOGLE_FIELDS) - {
        "layer_norm_eps"}
    if additions & set(data):
        return BertConfig.from_json(path)
    foreign = set(data) - set(GOOGLE_FIELDS) - _GOOGLE_EXTRA_KEYS
    if foreign or (input_format == "hf" and os.path.basename(path) == "config.json"):
        return config_from_hf(data, path)
    return BertConfig.from_json(path)


def hf_config(bundle: Bundle) -> dict:
    config = bundle.config
    fields = {name: getattr(config, name) for name in GOOGLE_FIELDS}
    fields["hidden_act"] = {"gelu_exact": "gelu", "relu": "relu"}.get(config.hidden_act,
                                                                     "gelu_new")
    pad = 0
    if bundle.vocab is not None and "[PAD]" in bundle.vocab.tokens:
        pad = bundle.vocab.tokens.index("[PAD]")
    architecture = ("BertForPreTraining" if bundle.has_nsp else
                    "BertForMaskedLM" if bundle.has_head else "BertModel")
    return {"architectures": [architecture],
            "model_type": "bert", **fields, "layer_norm_eps": config.layer_norm_eps,
            "position_embedding_type": "absolute", "pad_token_id": pad,
            "tie_word_embeddings": True}


def load_safetensors(path: str) -> dict:
    """The tensors of one `.safetensors` file; ValueError naming it when it
    is truncated, its header is corrupt, or it is not a safetensors file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    if not os.path.isfile(path):
        raise ValueError(f"Weights file not found: {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}): it is truncated "
                         "or corrupt; download or export it again.") from None


def load_torch_bin(path: str) -> dict:
    """The tensors of one `pytorch_model.bin`, read with `torch.load(...,
    weights_only=True)`: a pickle that would run code is refused, not run."""
    try:
        import torch
    except ImportError:
        raise ValueError(f"{path}: reading pytorch_model.bin needs torch (pip install torch), "
                         f"or re-save the model with save_pretrained(..., "
                         f"safe_serialization=True) to get {WEIGHTS_NAME}.") from None
    if not os.path.isfile(path):
        raise ValueError(f"Weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise ValueError(f"{path} was refused: it holds more than tensors (a pickle that "
                         f"would run code; {first}). Use a {WEIGHTS_NAME} file, or load it "
                         "yourself only if you trust its source.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable PyTorch weights file ({str(e)[:200]}): "
                         "it is truncated or corrupt; download or export it again.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} must hold a state dict of tensor name -> tensor. "
                         f"Received: {type(state).__name__}")
    return {name: (value.float() if value.is_floating_point() else value).numpy()
            for name, value in state.items()}


def index_files(index: str, directory: str) -> list:
    """The weight files an index's `weight_map` names, each refused unless it
    stays inside `directory`."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index}: `weight_map` must be a non-empty JSON object of tensor "
                         f"name -> file name. Received: {weight_map!r}"[:400])
    root = os.path.realpath(directory)
    files = []
    for tensor, name in weight_map.items():
        target = os.path.realpath(os.path.join(directory, name)) if isinstance(
            name, str) and name and not os.path.isabs(name) else ""
        if not target or os.path.commonpath([root, target]) != root or target == root:
            raise ValueError(f"{index}: weight_map[{tensor!r}]={name!r} must name a file "
                             f"inside {directory}; paths outside the model directory are "
                             "refused.")
        files.append(name)
    return sorted(set(files))


def load_tensors(directory: str) -> tuple[dict, str]:
    """Safetensors first (one file or an index), else `pytorch_model.bin`:
    `(name → array, the file read)`."""
    for name, load in ((WEIGHTS_NAME, load_safetensors), (TORCH_WEIGHTS_NAME, load_torch_bin)):
        path = os.path.join(directory, name)
        index = path + ".index.json"
        if os.path.isfile(path):
            return load(path), path
        if os.path.isfile(index):
            tensors = {}
            for file in index_files(index, directory):
                tensors.update(load(os.path.join(directory, file)))
            return tensors, index
    raise ValueError(f"No {WEIGHTS_NAME} (or {TORCH_WEIGHTS_NAME}) in {directory}.")


def read(directory: str, config: BertConfig | None = None, config_source: str = "",
         heads: str = "all", vocab_path: str = "") -> Bundle:
    """Reads a Hugging Face BERT directory into a `Bundle`."""
    if not os.path.isdir(directory):
        raise ValueError(f"Hugging Face input must be a directory with config.json and "
                         f"{WEIGHTS_NAME}. Received: {directory}")
    tensors, where = load_tensors(directory)
    prefixed = any(name.startswith("bert.") for name in tensors)
    arrays = {checkpoint_names.normalize_hf_name(n, prefixed): v for n, v in tensors.items()}
    if config is None:
        config_source = os.path.join(directory, "config.json")
        if not os.path.isfile(config_source):
            raise ValueError(f"No config.json in {directory}; pass --config.")
        config = config_from_hf(read_json(config_source), config_source, set(arrays))
    decoder_bias = arrays.get("cls.predictions.decoder.bias")
    if "cls.predictions.bias" not in arrays and decoder_bias is not None:
        arrays["cls.predictions.bias"] = decoder_bias
    decoder = arrays.get("cls.predictions.decoder.weight")
    word = arrays.get("bert.embeddings.word_embeddings.weight")
    if decoder is not None and word is not None and not np.array_equal(decoder, word):
        logging.warning("%s: cls.predictions.decoder.weight differs from the word embeddings; "
                        "this model ties them, so the decoder matrix is dropped.", where)
    ignorable = lambda name: (name in checkpoint_names.HF_TIED
                              or name in checkpoint_names.HF_BUFFERS)
    table = read_by_table(
        config, heads, {n: v.shape for n, v in arrays.items()}, arrays.__getitem__,
        lambda e: e.hf, lambda e: e.hf_transpose, where=where, ignorable=ignorable,
        is_bert_name=lambda n: n.startswith("bert."), config_source=config_source)
    vocab = vocab_lib.read(vocab_path) if vocab_path else vocab_lib.find(directory)
    if vocab is None:
        logging.warning("No vocab.txt or SentencePiece model in %s.", directory)
    return Bundle(config, table.weights, vocab, where, table.fresh)


def write(directory: str, bundle: Bundle) -> str:
    """Writes `config.json`, `model.safetensors` and the vocabulary files.
    Untabled and freshly initialised variables are skipped (the caller
    reports the untabled ones). A model option Hugging Face's BERT cannot run
    is refused (`bundle.check_holdable`)."""
    from safetensors.numpy import save_file
    check_holdable(bundle.config, "hf")
    os.makedirs(directory, exist_ok=True)
    head = bundle.has_head
    tensors = {}
    for entry, value in bundle.exported().values():
        name = entry.hf if head else entry.hf[len("bert."):]
        tensors[name] = np.ascontiguousarray(value.T if entry.hf_transpose else value,
                                             dtype=np.float32)
    path = os.path.join(directory, WEIGHTS_NAME)
    save_file(tensors, path, metadata={"format": "pt"})
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_config(bundle), f, indent=2, sort_keys=True)
        f.write("\n")
    write_vocabulary(directory, bundle)
    logging.info("Wrote %d tensors to %s.", len(tensors), path)
    return path


def write_vocabulary(directory: str, bundle: Bundle) -> None:
    """The bundle's vocabulary (`vocab.txt` or `spiece.model`) and the
    tokenizer files `transformers` loads; nothing when it has none."""
    vocab = bundle.vocab
    if vocab is not None:
        if vocab.kind == vocab_lib.WORDPIECE:
            vocab_lib.write_vocab_txt(vocab, directory)
        else:
            vocab_lib.copy_sentencepiece(vocab, directory, "spiece.model")
        hf_tokenizer.write(vocab, directory, bundle.config.max_position_embeddings)
