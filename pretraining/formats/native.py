"""This framework's own formats: the trainer's `tf.train.Checkpoint`
(`RUN_DIR/checkpoints/ckpt-N`, object-graph names) and `.keras` files.

A trainer checkpoint holds `model` (a `BertPretrainer`), `optimizer`,
`step`, `rng` and, with `optimizer.ema_decay`, `ema` whose `averages` list
follows `model.trainable_variables`. Its model config is the `model` section
of `RUN_DIR/config.json` (or a `bert_config.json` beside the checkpoint, as
this converter writes).
"""

import os
import shutil

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from pretraining import checkpoints
from pretraining.config import BertConfig
from pretraining.formats import vocab as vocab_lib
from pretraining.formats.bundle import Bundle, assign, build_model, read_json

CHECKPOINT_NAME = "ckpt"


def _find_config(path: str, prefix: str) -> tuple[BertConfig, str]:
    checkpoint_dir = os.path.dirname(prefix)
    places = ([path] if os.path.isdir(path) else []) + [checkpoint_dir,
                                                        os.path.dirname(checkpoint_dir)]
    for directory in places:
        run_config = os.path.join(directory, "config.json")
        if os.path.isfile(run_config):
            data = read_json(run_config)
            if isinstance(data.get("model"), dict):
                return BertConfig.from_dict(data["model"], f"{run_config}: model"), run_config
        bert_config = os.path.join(directory, "bert_config.json")
        if os.path.isfile(bert_config):
            return BertConfig.from_json(bert_config), bert_config
    raise ValueError(f"No model config for {prefix}: looked for config.json (a run's, with a "
                     f"`model` section) and bert_config.json in {sorted(set(places))}; "
                     "pass --config.")


def _find_vocab(path: str, prefix: str) -> vocab_lib.Vocabulary | None:
    checkpoint_dir = os.path.dirname(prefix)
    for directory in ([path] if os.path.isdir(path) else []) + [
            checkpoint_dir, os.path.dirname(checkpoint_dir)]:
        vocab = vocab_lib.find(directory)
        if vocab is not None:
            return vocab
        manifest = os.path.join(directory, "data_manifest.json")
        if os.path.isfile(manifest):
            data = read_json(manifest)
            tokenizer = data.get("tokenizer_file", "")
            if tokenizer and os.path.isfile(tokenizer):
                return vocab_lib.read(tokenizer, (data.get("tokenizer_options") or {}).get(
                    "do_lower_case"))
    return None


def _read_keras(path: str, heads: str, ema: bool) -> tuple[BertConfig, dict]:
    import pretraining.pretrainer  # noqa: F401  (registers the classes for deserialisation)
    if ema:
        raise ValueError(f"--ema needs a trainer checkpoint; {path} is a .keras file "
                         "(it holds one set of weights).")
    if not os.path.isfile(path):
        raise ValueError(f".keras file not found: {path}")
    model = keras.saving.load_model(path, compile=False)
    encoder = getattr(model, "encoder", model)
    keep_head = heads == "all"
    weights = {v.path: np.asarray(v.numpy()) for v in model.weights
               if keep_head or not v.path.startswith(("mlm/", "nsp/"))}
    return encoder.config, weights


def read(path: str, config: BertConfig | None = None, config_source: str = "",
         heads: str = "all", ema: bool = False, vocab_path: str = "") -> Bundle:
    """Reads a trainer checkpoint or a `.keras` file.

    Args:
        path: `.keras` file, run directory, `checkpoints/` directory or prefix. Required.
        config: `BertConfig` or None to find the run's config. Defaults to `None`.
        heads: `all` (the masked-LM head when present) or `encoder`. Defaults to `'all'`.
        ema: bool. Take the EMA averages instead of the raw weights. Defaults to `False`.
        vocab_path: vocabulary file; default: beside the checkpoint or the
            tokenizer named in the run's `data_manifest.json`.
    """
    if path.endswith(".keras"):
        config, weights = _read_keras(path, heads, ema)
        stem = path[: -len(".keras")]
        found = [p for p in (vocab_path, stem + ".model", stem + ".vocab.txt")
                 if p and os.path.isfile(p)]
        vocab = vocab_lib.read(found[0]) if found else None
        return Bundle(config, weights, vocab, path)
    prefix = checkpoints.find_prefix(path, "--input")
    if config is None:
        config, config_source = _find_config(path, prefix)
    # The NSP head (a run with next_sentence) is read when the checkpoint has one.
    nsp = heads == "all" and any(name.startswith("model/nsp/")
                                 for name, _ in tf.train.list_variables(prefix))
    model = build_model(config, head=True, nsp=nsp)
    restored = checkpoints.restore_weights(
        prefix, model, ("encoder",), ("masked_lm", "nsp") if heads == "all" else (),
        config_source)
    head = "masked_lm" in restored
    if ema:
        checkpoints.swap_in_ema(prefix, model)
    keep = {"mlm/": head, "nsp/": head and "nsp" in restored}
    weights = {v.path: np.asarray(v.numpy()) for v in model.weights
               if all(ok or not v.path.startswith(part) for part, ok in keep.items())}
    vocab = vocab_lib.read(vocab_path) if vocab_path else _find_vocab(path, prefix)
    if vocab is None:
        logging.warning("No vocabulary found for %s (pass --vocab).", prefix)
    return Bundle(config, weights, vocab, prefix)


def write(path: str, bundle: Bundle) -> str:
    """Writes a `.keras` file (when `path` ends in `.keras`) or a checkpoint
    directory (`ckpt-0` + `checkpoint` + `bert_config.json` + vocabulary)
    that `train.init_checkpoint` and this converter read. Returns what was written."""
    model = build_model(bundle.config, head=bundle.has_head, nsp=bundle.has_nsp)
    assign(model, bundle.weights, bundle.source)
    vocab = bundle.vocab
    if path.endswith(".keras"):
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        model.save(path)
        if vocab is not None:
            stem = path[: -len(".keras")]
            if vocab.kind == vocab_lib.SENTENCEPIECE and not vocab.resized:
                shutil.copyfile(vocab.source, stem + ".model")
            else:
                with open(stem + ".vocab.txt", "w", encoding="utf-8") as f:
                    f.writelines(t + "\n" for t in vocab.tokens)
        return path
    os.makedirs(path, exist_ok=True)
    root = model if bundle.has_head else tf.train.Checkpoint(encoder=model)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=root), path, max_to_keep=1,
                                         checkpoint_name=CHECKPOINT_NAME)
    prefix = manager.save(checkpoint_number=0)
    with open(os.path.join(path, "bert_config.json"), "w", encoding="utf-8") as f:
        f.write(bundle.config.to_json())
    if vocab is not None and vocab_lib.copy_sentencepiece(
            vocab, path, os.path.basename(vocab.source)) is None:
        vocab_lib.write_vocab_txt(vocab, path)
    return prefix
