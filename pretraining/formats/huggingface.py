"""Hugging Face BERT directories: `config.json` + `model.safetensors` (+
`vocab.txt`, `tokenizer_config.json`), read and written with the
`safetensors` NumPy API (no torch needed).

Read: `BertModel` (bare names or `bert.` prefix), `BertForMaskedLM`,
`BertForPreTraining` (its NSP head reported as not converted); LayerNorm
`weight`/`bias` or the older `gamma`/`beta`. Written: `BertForMaskedLM` with
the head, `BertModel` without; `hidden_act: "gelu_new"` (our GELU is the tanh
approximation; Hugging Face's `"gelu"` is the exact erf form).
"""

import json
import os

import numpy as np
from absl import logging

from pretraining import checkpoint_names
from pretraining.config import GOOGLE_FIELDS, BertConfig
from pretraining.formats import vocab as vocab_lib
from pretraining.formats.bundle import Bundle, read_by_table, read_json

WEIGHTS_NAME = "model.safetensors"
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def config_from_hf(data: dict, where: str) -> BertConfig:
    """Our `BertConfig` from a Hugging Face BERT `config.json`."""
    if data.get("model_type") != "bert":
        raise ValueError(f"{where}: model_type must be 'bert'. "
                         f"Received: model_type={data.get('model_type')!r}")
    if data.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{where}: position_embedding_type must be 'absolute'. "
                         f"Received: {data['position_embedding_type']!r}")
    eps = data.get("layer_norm_eps", 1e-12)
    if eps != 1e-12:
        logging.warning("%s: layer_norm_eps=%g; this model uses 1e-12 (Google BERT).", where, eps)
    act = data.get("hidden_act", "gelu")
    if act == "gelu":
        logging.warning("%s: hidden_act='gelu' is the exact (erf) GELU in Hugging Face; this "
                        "model uses the tanh approximation (Google BERT's 'gelu'). Outputs "
                        "differ slightly (max |Δ| of the two GELUs ≈ 5e-4).", where)
    elif act in _TANH_GELUS:
        act = "gelu"
    elif act != "relu":
        raise ValueError(f"{where}: hidden_act must be 'gelu', 'gelu_new' or 'relu'. "
                         f"Received: hidden_act={act!r}")
    fields = {name: data[name] for name in GOOGLE_FIELDS if name in data}
    fields["hidden_act"] = act
    try:
        return BertConfig.from_dict(fields, where)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def hf_config(bundle: Bundle) -> dict:
    config = bundle.config
    fields = {name: getattr(config, name) for name in GOOGLE_FIELDS}
    if fields["hidden_act"] in ("gelu", "gelu_new"):
        fields["hidden_act"] = "gelu_new"
    pad = 0
    if bundle.vocab is not None and "[PAD]" in bundle.vocab.tokens:
        pad = bundle.vocab.tokens.index("[PAD]")
    return {"architectures": ["BertForMaskedLM" if bundle.has_head else "BertModel"],
            "model_type": "bert", **fields, "layer_norm_eps": 1e-12,
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


def _load_tensors(directory: str) -> tuple[dict, str]:
    path = os.path.join(directory, WEIGHTS_NAME)
    index = path + ".index.json"
    if os.path.isfile(path):
        return load_safetensors(path), path
    if os.path.isfile(index):
        tensors = {}
        for name in index_files(index, directory):
            tensors.update(load_safetensors(os.path.join(directory, name)))
        return tensors, index
    if os.path.isfile(os.path.join(directory, "pytorch_model.bin")):
        raise ValueError(f"{directory} has only pytorch_model.bin; this converter reads "
                         f"{WEIGHTS_NAME} (re-save it with save_pretrained(..., "
                         "safe_serialization=True)).")
    raise ValueError(f"No {WEIGHTS_NAME} in {directory}.")


def read(directory: str, config: BertConfig | None = None, config_source: str = "",
         heads: str = "all", vocab_path: str = "") -> Bundle:
    """Reads a Hugging Face BERT directory into a `Bundle`."""
    if not os.path.isdir(directory):
        raise ValueError(f"Hugging Face input must be a directory with config.json and "
                         f"{WEIGHTS_NAME}. Received: {directory}")
    tensors, where = _load_tensors(directory)
    if config is None:
        config_source = os.path.join(directory, "config.json")
        if not os.path.isfile(config_source):
            raise ValueError(f"No config.json in {directory}; pass --config.")
        config = config_from_hf(read_json(config_source), config_source)
    prefixed = any(name.startswith("bert.") for name in tensors)
    arrays = {checkpoint_names.normalize_hf_name(n, prefixed): v for n, v in tensors.items()}
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
    weights = read_by_table(
        config, heads, {n: v.shape for n, v in arrays.items()}, arrays.__getitem__,
        lambda e: e.hf, lambda e: e.hf_transpose, where=where, ignorable=ignorable,
        nsp_prefix=checkpoint_names.HF_NSP_PREFIX, config_source=config_source)
    vocab = vocab_lib.read(vocab_path) if vocab_path else vocab_lib.find(directory)
    if vocab is None:
        logging.warning("No vocab.txt or SentencePiece model in %s.", directory)
    return Bundle(config, weights, vocab, where)


def write(directory: str, bundle: Bundle) -> str:
    """Writes `config.json`, `model.safetensors` and the vocabulary files.
    Untabled variables are skipped (the caller reports them)."""
    from safetensors.numpy import save_file
    os.makedirs(directory, exist_ok=True)
    head = bundle.has_head
    tensors = {}
    for path, value in bundle.weights.items():
        entry = checkpoint_names.lookup(path)
        if entry is None:
            continue
        name = entry.hf if head else entry.hf[len("bert."):]
        tensors[name] = np.ascontiguousarray(value.T if entry.hf_transpose else value,
                                             dtype=np.float32)
    path = os.path.join(directory, WEIGHTS_NAME)
    save_file(tensors, path, metadata={"format": "pt"})
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_config(bundle), f, indent=2, sort_keys=True)
        f.write("\n")
    vocab = bundle.vocab
    if vocab is not None:
        if vocab.kind == vocab_lib.WORDPIECE:
            vocab_lib.write_vocab_txt(vocab, directory)
            vocab_lib.write_tokenizer_config(vocab, directory)
        elif vocab_lib.copy_sentencepiece(vocab, directory, "spiece.model") is None:
            vocab_lib.write_vocab_txt(vocab, directory)
            logging.warning("The SentencePiece model was resized: wrote vocab.txt of its "
                            "pieces in id order; the .model file is not rewritten.")
    logging.info("Wrote %d tensors to %s.", len(tensors), path)
    return path
