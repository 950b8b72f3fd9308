"""This framework's own formats: the trainer's `tf.train.Checkpoint`
(`RUN_DIR/checkpoints/ckpt-N`, object-graph names) and `.keras` files.

A trainer checkpoint holds `model` (a `BertPretrainer`), `optimizer`,
`step`, `rng` and, with `optimizer.ema_decay`, `ema` whose `averages` list
follows `model.trainable_variables`. Its model config is the `model` section
of `RUN_DIR/config.json` (or a `bert_config.json` beside the checkpoint, as
this converter writes).
"""

import os
import re
import shutil

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from pretraining.config import BertConfig
from pretraining.formats import vocab as vocab_lib
from pretraining.formats.bundle import Bundle, assign, build_model, read_json
from pretraining.layers import TransformerLayer

CHECKPOINT_NAME = "ckpt"


def find_prefix(path: str) -> str:
    """A checkpoint prefix from a run directory, a `checkpoints/` directory or a prefix."""
    if os.path.isdir(path):
        prefix = (tf.train.latest_checkpoint(path)
                  or tf.train.latest_checkpoint(os.path.join(path, "checkpoints")))
        if not prefix:
            raise ValueError(f"No checkpoint in {path} or {os.path.join(path, 'checkpoints')} "
                             "(expected a `checkpoint` file written by the trainer).")
        return prefix
    if path.endswith(".index"):
        path = path[: -len(".index")]
    if not os.path.isfile(path + ".index"):
        raise ValueError(f"Native input must be a .keras file, a run directory, a checkpoints "
                         f"directory or a checkpoint prefix. {path}.index not found.")
    return path


def _first_line(error: Exception, limit: int = 400) -> str:
    text = (getattr(error, "message", None) or str(error)).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


def restore_checked(prefix: str, model, config, config_source: str):
    """Restores `model` (a `BertPretrainer` built from `config`) from a
    trainer checkpoint, refusing a checkpoint of another architecture.

    A variable of another shape is named with both shapes; a variable the
    model has and the checkpoint lacks (fewer layers, no Conditional
    LayerNorm) is refused; so is a checkpoint with more encoder layers than
    `config.num_hidden_layers` (found by probing `layer_N`). Attention heads
    do not change any shape and cannot be checked from the weights.

    Args:
        prefix: str. Checkpoint prefix (`.../checkpoints/ckpt-N`).
        model: the `BertPretrainer` to restore into.
        config: `BertConfig` it was built from.
        config_source: str. Where `config` came from, for messages.

    Raises:
        ValueError: naming the checkpoint, the config file and what differs.
    """
    fix = (f"use the config.json the run was trained with, or the run directory "
           f"that wrote {prefix}")
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
    except (ValueError, tf.errors.InvalidArgumentError) as e:
        raise ValueError(f"{prefix} does not fit the model {config_source} builds: "
                         f"{_first_line(e)}; {fix}.") from None
    except tf.errors.OpError as e:
        raise ValueError(f"{prefix} cannot be read: {_first_line(e)} (truncated or "
                         "corrupt checkpoint files).") from None
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        found = re.findall(r"path=([^,\s]+), shape=(\([^)]*\))", str(e))
        what = ("; ".join(f"{path} {shape}" for path, shape in found[:3])
                or _first_line(e, 300))
        raise ValueError(f"{prefix} lacks variables of the model {config_source} builds "
                         f"(not in the checkpoint: {what}); {fix}.") from None
    check_layer_count(prefix, config, config_source)
    return status


def check_layer_count(prefix: str, config, config_source: str) -> None:
    """Refuses a checkpoint holding `layer_N` for N = `config.num_hidden_layers`
    (more encoder layers than the config; the read itself ignores them)."""
    fix = (f"use the config.json the run was trained with, or the run directory "
           f"that wrote {prefix}")
    n = config.num_hidden_layers
    condition_size = config.condition_hidden_size or config.condition_size
    probe = TransformerLayer(config.hidden_size, config.num_attention_heads,
                             config.intermediate_size, config.hidden_act, 0.0, 0.0,
                             config.initializer_range, condition_size=condition_size,
                             name=f"layer_{n}")
    probe.build((None, None, config.hidden_size))
    extra = tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=tf.train.Checkpoint(
        **{f"layer_{n}": probe})))
    try:
        extra_status = extra.read(prefix)
        extra_status.expect_partial()
        extra_status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError):
        return  # no layer_N: the layer count matches
    raise ValueError(f"{prefix} has more encoder layers than the model {config_source} "
                     f"builds (num_hidden_layers={n}, but the checkpoint holds "
                     f"model/encoder/layer_{n}); {fix}.")


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
    import pretraining.heads  # noqa: F401  (registers the classes for deserialisation)
    if ema:
        raise ValueError(f"--ema needs a trainer checkpoint; {path} is a .keras file "
                         "(it holds one set of weights).")
    if not os.path.isfile(path):
        raise ValueError(f".keras file not found: {path}")
    model = keras.saving.load_model(path, compile=False)
    encoder = getattr(model, "encoder", model)
    keep_head = heads == "all"
    weights = {v.path: np.asarray(v.numpy()) for v in model.weights
               if keep_head or not v.path.startswith("mlm/")}
    return encoder.config, weights


def read(path: str, config: BertConfig | None = None, config_source: str = "",
         heads: str = "all", ema: bool = False, vocab_path: str = "") -> Bundle:
    """Reads a trainer checkpoint or a `.keras` file.

    Args:
        path: `.keras` file, run directory, `checkpoints/` directory or prefix.
        config: `BertConfig` or None to find the run's config.
        heads: `all` (the masked-LM head when present) or `encoder`.
        ema: bool. Take the EMA averages instead of the raw weights.
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
    prefix = find_prefix(path)
    if config is None:
        config, config_source = _find_config(path, prefix)
    model = build_model(config, head=True)
    encoder = model.encoder
    try:
        tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=encoder)).read(
            prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        raise ValueError(f"{prefix} does not hold the encoder of the config from "
                         f"{config_source}: {str(e)[:600]}") from None
    check_layer_count(prefix, config, config_source)
    head = False
    if heads == "all":
        try:
            tf.train.Checkpoint(model=tf.train.Checkpoint(masked_lm=model.masked_lm)).read(
                prefix).expect_partial().assert_existing_objects_matched()
            head = True
        except AssertionError:
            logging.warning("%s has no masked-LM head: converting the encoder only.", prefix)
        except (ValueError, tf.errors.InvalidArgumentError) as e:
            raise ValueError(f"{prefix}: the masked-LM head does not fit the config from "
                             f"{config_source}: {str(e)[:600]}") from None
    if ema:
        _swap_in_averages(prefix, model)
    weights = {v.path: np.asarray(v.numpy()) for v in model.weights
               if head or not v.path.startswith("mlm/")}
    vocab = vocab_lib.read(vocab_path) if vocab_path else _find_vocab(path, prefix)
    if vocab is None:
        logging.warning("No vocabulary found for %s (pass --vocab).", prefix)
    return Bundle(config, weights, vocab, prefix)


def _swap_in_averages(prefix: str, model) -> None:
    """Sets `model.trainable_variables` to the checkpoint's `ema/averages/i`."""
    reader = tf.train.load_checkpoint(prefix)
    names = reader.get_variable_to_shape_map()
    key = "ema/averages/{}/.ATTRIBUTES/VARIABLE_VALUE"
    count = sum(1 for n in names if n.startswith("ema/averages/") and
                n.endswith("/.ATTRIBUTES/VARIABLE_VALUE"))
    variables = model.trainable_variables
    if count == 0:
        raise ValueError(f"--ema: {prefix} has no EMA averages (trained without "
                         "optimizer.ema_decay?).")
    if count < len(variables):
        raise ValueError(f"--ema: {prefix} has {count} averages, the model has "
                         f"{len(variables)} trainable variables.")
    if count > len(variables):
        logging.warning("--ema: %d averages beyond this model's variables (e.g. an NSP head) "
                        "are not converted.", count - len(variables))
    for i, v in enumerate(variables):
        shape = tuple(names[key.format(i)])
        if shape != tuple(v.shape):
            raise ValueError(f"--ema: {prefix} ema/averages/{i} has shape {shape}, {v.path} "
                             f"has {tuple(v.shape)}: the averages do not follow this model.")
        v.assign(reader.get_tensor(key.format(i)))
    logging.info("Took the EMA averages of %d variables from %s.", len(variables), prefix)


def write(path: str, bundle: Bundle) -> str:
    """Writes a `.keras` file (when `path` ends in `.keras`) or a checkpoint
    directory (`ckpt-0` + `checkpoint` + `bert_config.json` + vocabulary)
    that `train.init_checkpoint` and this converter read. Returns what was written."""
    model = build_model(bundle.config, head=bundle.has_head)
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
