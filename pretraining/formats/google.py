"""Google BERT's TF1 name-based checkpoints: `bert_model.ckpt.{index,data-*}`
+ `bert_config.json` + `vocab.txt`.

Read with `tf.train.load_checkpoint`; written with `tf.raw_ops.SaveV2` (a
`tf.train.Checkpoint` would write object-graph names, not Google's) and made
findable by `tf.train.latest_checkpoint` with `update_checkpoint_state`.
"""

import glob
import json
import os

import tensorflow as tf
from absl import logging

from pretraining import checkpoint_names
from pretraining.config import BertConfig, to_google_dict
from pretraining.formats import vocab as vocab_lib
from pretraining.formats.bundle import Bundle, check_holdable, read_by_table

CHECKPOINT_NAME = "bert_model.ckpt"


def find_prefix(path: str) -> str:
    """The checkpoint prefix for a prefix, an `.index` file or a directory."""
    prefix = path
    if os.path.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if not prefix:
            indexes = sorted(glob.glob(os.path.join(path, "*.index")))
            if len(indexes) != 1:
                raise ValueError(f"{path}: expected one TF checkpoint (a `*.index` file) in "
                                 f"the directory, found {len(indexes)}.")
            prefix = indexes[0]
    for suffix in (".index", ".data-00000-of-00001", ".meta"):
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
    if not os.path.isfile(prefix + ".index"):
        raise ValueError(f"No TF checkpoint at {path} ({prefix}.index not found).")
    return prefix


def read(path: str, config: BertConfig | None = None, config_source: str = "",
         heads: str = "all", vocab_path: str = "") -> Bundle:
    """Reads a Google BERT checkpoint.

    Args:
        path: checkpoint prefix (`.../bert_model.ckpt`), `.index` file or directory.
        config: `BertConfig` or None to read `bert_config.json` beside it.
        config_source: where `config` came from, for messages.
        heads: `all` or `encoder`.
        vocab_path: vocabulary file; default `vocab.txt` beside the checkpoint.
    """
    prefix = find_prefix(path)
    directory = os.path.dirname(prefix)
    if config is None:
        config_source = os.path.join(directory, "bert_config.json")
        if not os.path.isfile(config_source):
            raise ValueError(f"No bert_config.json beside {prefix} ({config_source} not "
                             "found); pass --config.")
        config = BertConfig.from_json(config_source)
    reader = tf.train.load_checkpoint(prefix)
    names = reader.get_variable_to_shape_map()
    table = read_by_table(
        config, heads, names, reader.get_tensor, lambda e: e.google,
        lambda e: e.google_transpose, where=prefix,
        ignorable=checkpoint_names.is_google_ignorable,
        is_bert_name=lambda n: n.startswith("bert/"), config_source=config_source)
    vocab = vocab_lib.read(vocab_path) if vocab_path else vocab_lib.find(directory)
    if vocab is None:
        logging.warning("No vocab.txt beside %s: the output will have no vocabulary.", prefix)
    return Bundle(config, table.weights, vocab, prefix, table.fresh)


def google_config(config: BertConfig) -> dict:
    """`bert_config.json` fields. Google's code computes `gelu` as the tanh
    approximation: our tanh names become `gelu`; an exact-GELU model is
    written as `gelu` with a warning (Google's code will run it with tanh)."""
    fields = to_google_dict(config)
    if fields["hidden_act"] == "gelu_exact":
        logging.warning("hidden_act='gelu_exact': Google's bert_config.json has no exact GELU; "
                        "written as 'gelu', which Google's code computes with the tanh "
                        "approximation (outputs move slightly; max |Δ| of the two GELUs "
                        "≈ 5e-4).")
    if fields["hidden_act"] != "relu":
        fields["hidden_act"] = "gelu"
    if config.layer_norm_eps != 1e-12:
        logging.warning("layer_norm_eps=%g: Google's bert_config.json has no such field; "
                        "Google's code will use 1e-12.", config.layer_norm_eps)
    return fields


def write(directory: str, bundle: Bundle, extra: dict | None = None) -> str:
    """Writes `bert_model.ckpt`, `checkpoint`, `bert_config.json` and the
    vocabulary (`vocab.txt`; a SentencePiece model is copied too). Returns
    the checkpoint prefix. Untabled variables are skipped (the caller reports them).
    `extra`: more tensors by Google name (a classifier's `output_weights`, `output_bias`).
    A model option Google's BERT cannot run is refused (`bundle.check_holdable`)."""
    check_holdable(bundle.config, "google")
    tf.io.gfile.makedirs(directory)
    names, tensors = [], []
    for entry, value in bundle.exported().values():
        names.append(entry.google)
        tensors.append(tf.constant(value.T.copy() if entry.google_transpose else value))
    for name, value in (extra or {}).items():
        names.append(name)
        tensors.append(tf.constant(value))
    prefix = os.path.join(directory, CHECKPOINT_NAME)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)
    # The state file names the checkpoint by its basename, which
    # tf.train.latest_checkpoint resolves against the directory wherever it is
    # (update_checkpoint_state wrote "../../bert_model.ckpt" for output=a/b).
    with tf.io.gfile.GFile(os.path.join(directory, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{CHECKPOINT_NAME}"\n'
                f'all_model_checkpoint_paths: "{CHECKPOINT_NAME}"\n')
    with tf.io.gfile.GFile(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(google_config(bundle.config), f, indent=2, sort_keys=True)
        f.write("\n")
    if bundle.vocab is not None:
        vocab_lib.write_vocab_txt(bundle.vocab, directory)
        vocab_lib.copy_sentencepiece(bundle.vocab, directory,
                                     os.path.basename(bundle.vocab.source))
    logging.info("Wrote %d tensors to %s.", len(names), prefix)
    return prefix
