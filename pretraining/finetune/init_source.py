"""`--init`: the encoder, its config and tokenizer, from one of our run
directories, a Google BERT checkpoint directory or a Hugging Face directory,
through the converter's readers (`pretraining.convert.load`): no separate
conversion step.

The format is told from the files: `config.json` with a `model` section (our
run) or a checkpoint beside `bert_config.json` in our object-graph layout →
`native`; `config.json` + `model.safetensors`/`pytorch_model.bin` → `hf`;
a TF1 checkpoint with Google's `bert/...` names → `google`.
"""

import dataclasses
import json
import os

from absl import logging

from pretraining.config import BertConfig

# Encoder variables fine-tuning starts afresh: Conditional LayerNorm's
# (zero-initialised) and the dropout RNG state.
_FRESH = ("condition", "gamma_dense", "beta_dense", "seed_generator")
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclasses.dataclass
class InitSource:
    """What `--init` holds.

    Args:
        path: str. As given. Required.
        kind: str. `native`, `google` or `hf`. Required.
        config: `BertConfig`. The encoder's config. Required.
        weights: dict. Our variable path → array (encoder only). Required.
        tokenizer: str. The tokenizer file found with it ("" when none).
            Required.
    """

    path: str
    kind: str
    config: BertConfig
    weights: dict
    tokenizer: str


def _no_encoder(path: str, why: str) -> ValueError:
    return ValueError(f"--init={path!r} holds no BERT encoder ({why}): give one of our run "
                      "directories, a Google BERT checkpoint directory (bert_model.ckpt + "
                      "bert_config.json) or a Hugging Face directory (config.json + "
                      "model.safetensors).")


def detect_kind(path: str) -> str:
    """`native`, `google` or `hf` for the files at `path` (see module doc)."""
    import tensorflow as tf
    from pretraining import checkpoints
    if not path or not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise _no_encoder(path, "nothing there")
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    run_config = os.path.join(directory, "config.json")
    if os.path.isfile(run_config):
        try:
            with open(run_config, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            return "native"
        if any(os.path.isfile(os.path.join(directory, n)) for n in _HF_WEIGHTS):
            return "hf"
    try:
        prefix = checkpoints.find_prefix(path, "--init")
        google = checkpoints.is_google_layout(prefix)
    except (ValueError, tf.errors.OpError):
        raise _no_encoder(path, "no checkpoint, config.json or bert_config.json there") \
            from None
    if google:
        return "google"
    names = [n for n, _ in tf.train.list_variables(prefix)]
    if not any(n.startswith("model/encoder/") for n in names):
        raise _no_encoder(path, f"{prefix} has no model/encoder/ or bert/ variables")
    return "native"


def read_init(path: str) -> InitSource:
    """Reads the encoder of `--init` (weights, config, tokenizer).

    Raises:
        ValueError: no encoder there, or files that do not read; one line
            naming `--init` and the path.
    """
    from pretraining import convert
    kind = detect_kind(path)
    try:
        bundle = convert.load(path, kind, heads="encoder")
    except ValueError as e:
        raise ValueError(f"--init={path!r} ({kind}): {' '.join(str(e).split())}") from None
    weights = {p: v for p, v in bundle.weights.items() if p.startswith("bert/")}
    if not weights:
        raise _no_encoder(path, "no bert/ weights")
    tokenizer = bundle.vocab.source if bundle.vocab is not None else ""
    if bundle.vocab is not None and bundle.vocab.resized:
        tokenizer = ""
    logging.info("--init: the %s encoder of %s (%d tensors)%s.", kind, bundle.source,
                 len(weights), f", tokenizer {tokenizer}" if tokenizer else "")
    return InitSource(path, kind, bundle.config, weights, tokenizer)


def assign_encoder(encoder, source: InitSource) -> None:
    """Sets `encoder`'s weights from `source`. Every weight of the encoder
    must be there, but for the Conditional LayerNorm's (zero at the start of
    fine-tuning) and the dropout RNG state."""
    missing = []
    for v in encoder.weights:
        value = source.weights.get(v.path)
        if value is None:
            if not any(part in v.path for part in _FRESH):
                missing.append(v.path)
            continue
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"--init={source.path!r}: {v.path} has shape "
                             f"{tuple(value.shape)}, the model expects {tuple(v.shape)}.")
        v.assign(value)
    if missing:
        raise _no_encoder(source.path, f"missing {missing[:3]}")
