"""The record schema: special ids, TFRecord feature specs and the manifest.

This module is the single source of the on-disk data contract. The masked-LM
layout is Google's `create_pretraining_data.py` layout, so records written by
Google's tool parse with the same spec.
"""

import dataclasses
import json
import math
import os
import types
import typing
from typing import Any

from data_pipeline import atomic

PAD_ID = 0
UNK_ID = 1
CLS_ID = 2
SEP_ID = 3
MASK_ID = 4
NUM_SPECIAL_IDS = 5
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "cls": CLS_ID, "sep": SEP_ID,
               "mask": MASK_ID}

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1
TASKS = ("mlm", "seq2seq", "lm")
MASKING_MODES = ("static", "dynamic", "none")
TOKENIZER_KINDS = ("sentencepiece", "wordpiece", "unknown")
SPLITS = ("train", "eval")
COMPRESSIONS = ("", "GZIP")
CONDITION_KINDS = ("class", "vector")


def mlm_static_feature_spec(max_seq_length: int, max_predictions_per_seq: int,
                            next_sentence: bool = False) -> dict:
    """Feature spec for `tf.io.parse_example` of statically masked MLM records.

    Args:
        max_seq_length: int. L, the length of `input_ids`, `input_mask` and
            `segment_ids`.
        max_predictions_per_seq: int. P, the length of the `masked_lm_*`
            features.
        next_sentence: bool. Whether records carry `next_sentence_labels[1]`.
            Defaults to False.

    Returns:
        A dict of feature name -> `tf.io.FixedLenFeature` (int64, except
        `masked_lm_weights` float32).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    length, preds = max_seq_length, max_predictions_per_seq
    spec = {
        "input_ids": tf.io.FixedLenFeature([length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([length], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([preds], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([preds], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([preds], tf.float32),
    }
    if next_sentence:
        spec["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)
    return spec


def feature_lengths(task: str, masking: str, max_seq_length: int,
                    max_predictions_per_seq: int,
                    next_sentence: bool = False,
                    condition: dict | None = None) -> dict:
    """On-disk features of a record layout: name -> (length, "int"|"float").

    Args:
        task: str. "mlm", "seq2seq" or "lm".
        masking: str. "static" or "dynamic" for mlm, "none" otherwise.
        max_seq_length: int. L.
        max_predictions_per_seq: int. P (mlm static only).
        next_sentence: bool. mlm records carry `next_sentence_labels[1]`.
            Defaults to False.
        condition: dict | None. The manifest's `condition`: records carry
            `condition`, int64 `[1]` (a class id) or float `[size]` (a
            vector). Defaults to None (no `condition` feature).
    """
    length = max_seq_length
    out = {"input_ids": (length, "int"), "input_mask": (length, "int")}
    if task in ("mlm", "seq2seq"):
        out["segment_ids"] = (length, "int")
    if task == "mlm" and masking == "static":
        preds = max_predictions_per_seq
        out.update({"masked_lm_positions": (preds, "int"),
                    "masked_lm_ids": (preds, "int"),
                    "masked_lm_weights": (preds, "float")})
    elif task == "mlm":
        out["word_starts"] = (length, "int")
    if task == "mlm" and next_sentence:
        out["next_sentence_labels"] = (1, "int")
    if condition:
        out["condition"] = ((1, "int") if condition["kind"] == "class"
                            else (condition["size"], "float"))
    return out


def zero_record(lengths: dict) -> bytes:
    """The all-zero record of a layout (`feature_lengths`): padding that
    counts for nothing (zero `input_mask` and `masked_lm_weights`), every
    value one byte (the smallest record of the layout).

    Args:
        lengths: dict. name -> (length, "int"|"float").
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    feature = {}
    for name, (length, kind) in lengths.items():
        if kind == "float":
            feature[name] = tf.train.Feature(
                float_list=tf.train.FloatList(value=[0.0] * length))
        else:
            feature[name] = tf.train.Feature(
                int64_list=tf.train.Int64List(value=[0] * length))
    return tf.train.Example(features=tf.train.Features(
        feature=feature)).SerializeToString(deterministic=True)


def feature_spec(manifest: "Manifest") -> dict:
    """`tf.io.parse_example` spec of the records a manifest describes."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    lengths = feature_lengths(manifest.task, manifest.masking,
                              manifest.max_seq_length,
                              manifest.max_predictions_per_seq,
                              manifest.next_sentence, manifest.condition)
    return {name: tf.io.FixedLenFeature(
        [n], tf.float32 if kind == "float" else tf.int64)
        for name, (n, kind) in lengths.items()}


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(
            f"Manifest field `{name}` must be one of {list(choices)}. "
            f"Received: {name}={value!r}")


@dataclasses.dataclass(kw_only=True)
class Manifest:
    """Describes one split directory of TFRecord shards (`manifest.json`).

    Args:
        schema_version: int. Version of this schema. Defaults to 1.
        task: str. "mlm", "seq2seq" or "lm". Defaults to "mlm".
        max_seq_length: int. L of the records.
        max_predictions_per_seq: int. P of the batches (mlm).
        masking: str. "static" (masks stored in the records), "dynamic"
            (records keep `word_starts`; tf.data masks) or "none". Defaults
            to "static".
        masked_lm_prob: float. Fraction of tokens masked. Defaults to 0.15.
        whole_word_masking: bool. Whole words masked as units; False: every
            word piece on its own (dynamic masking follows it). Defaults to
            True (also for manifests written before the field).
        next_sentence: bool. Records carry `next_sentence_labels`. Defaults
            to False.
        tokenizer_kind: str. "sentencepiece", "wordpiece" or "unknown".
            Defaults to "sentencepiece".
        tokenizer_options: dict. e.g. {"do_lower_case": true}. Defaults to
            {}.
        reserved_id_ranges: list. [start, end) id runs treated as special
            besides `special_ids` (e.g. `[unusedN]`). Defaults to [].
        short_seq_prob: float. As built. Defaults to 0.1.
        dupe_factor: int. Times each document was packed. Defaults to 1.
        tokenizer_file: str. Path of the tokenizer model used.
        tokenizer_sha256: str. SHA-256 of the tokenizer model file.
        vocab_size: int. Tokenizer vocabulary size.
        special_ids: dict. Names pad/unk/cls/sep/mask -> ids.
        seed: int. Seed the split was built with.
        split: str. "train" or "eval".
        num_shards: int. Number of shard files.
        shard_files: list[str]. Shard basenames, in order.
        examples_per_shard: list[int]. Examples in each shard.
        num_examples: int. Total examples.
        compression: str. "" or "GZIP". Defaults to "".
        source: str. Human-readable description of the input.
        tool_version: str. `data_pipeline.__version__` that wrote the split.
        condition: dict | None. `{"kind": "class", "size": number of labels,
            "labels": [label, ...]}` (records carry the class id, an index
            into `labels`) or `{"kind": "vector", "size": n, "labels": []}`;
            None (left out of the JSON) when records carry no condition.
            Defaults to None.
    """

    schema_version: int = SCHEMA_VERSION
    task: str = "mlm"
    max_seq_length: int
    max_predictions_per_seq: int
    masking: str = "static"
    masked_lm_prob: float = 0.15
    whole_word_masking: bool = True
    next_sentence: bool = False
    tokenizer_kind: str = "sentencepiece"
    tokenizer_file: str
    tokenizer_sha256: str
    tokenizer_options: dict = dataclasses.field(default_factory=dict)
    vocab_size: int
    special_ids: dict
    reserved_id_ranges: list = dataclasses.field(default_factory=list)
    short_seq_prob: float = 0.1
    dupe_factor: int = 1
    seed: int
    split: str
    num_shards: int
    shard_files: list
    examples_per_shard: list
    num_examples: int
    compression: str = ""
    source: str
    tool_version: str
    condition: dict | None = None

    def __post_init__(self):
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"Manifest `schema_version` must be {SCHEMA_VERSION}. Received: "
                f"schema_version={self.schema_version!r}; rebuild the data with "
                "this version of `python -m data_pipeline.build`.")
        _check_choice("task", self.task, TASKS)
        _check_choice("masking", self.masking, MASKING_MODES)
        _check_choice("tokenizer_kind", self.tokenizer_kind, TOKENIZER_KINDS)
        if (self.task == "mlm") == (self.masking == "none"):
            raise ValueError(
                f"Manifest `masking` must be 'static' or 'dynamic' for task "
                f"'mlm' and 'none' for other tasks. Received: task="
                f"{self.task!r}, masking={self.masking!r}")
        _check_choice("split", self.split, SPLITS)
        _check_choice("compression", self.compression, COMPRESSIONS)
        for name in ("max_seq_length", "max_predictions_per_seq", "vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"Manifest field `{name}` must be >= 1. Received: "
                                 f"{name}={getattr(self, name)!r}")
        for name in ("num_shards", "num_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"Manifest field `{name}` must be >= 0. Received: "
                                 f"{name}={getattr(self, name)!r}")
        for i, name in enumerate(self.shard_files):
            if not _is_plain_name(name):
                raise ValueError(
                    f"Manifest field `shard_files` must hold file names inside the "
                    f"split directory (no path separators, `..` or absolute paths). "
                    f"Received: shard_files[{i}]={name!r}")
        for i, count in enumerate(self.examples_per_shard):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"Manifest field `examples_per_shard` must hold ints >= 0. "
                                 f"Received: examples_per_shard[{i}]={count!r}")
        if not (len(self.shard_files) == len(self.examples_per_shard)
                == self.num_shards):
            raise ValueError(
                "Manifest fields disagree: num_shards="
                f"{self.num_shards}, len(shard_files)={len(self.shard_files)}, "
                f"len(examples_per_shard)={len(self.examples_per_shard)}.")
        if sum(self.examples_per_shard) != self.num_examples:
            raise ValueError(
                f"Manifest fields disagree: num_examples={self.num_examples} but "
                f"sum(examples_per_shard)={sum(self.examples_per_shard)}.")
        if self.condition is not None:
            _check_condition(self.condition)

    def to_json(self) -> str:
        """Returns the manifest as indented JSON with sorted keys (without
        `condition` when it is None: unconditioned manifests are unchanged)."""
        data = dataclasses.asdict(self)
        if data["condition"] is None:
            del data["condition"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def write(self, directory: str) -> str:
        """Writes `directory/manifest.json` atomically and returns its path.

        Args:
            directory: str. An existing directory.
        """
        path = os.path.join(directory, MANIFEST_FILE)
        atomic.write_text(path, self.to_json())
        return path

    @classmethod
    def read(cls, directory: str) -> "Manifest":
        """Reads `directory/manifest.json`.

        Args:
            directory: str. A split directory written by `data_pipeline.build`.

        Raises:
            ValueError: the file is missing, not JSON, or has unknown or missing
                keys (all named in the message).
        """
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        path = os.path.join(directory, MANIFEST_FILE)
        if not tf.io.gfile.exists(path):  # local paths and gs://
            raise ValueError(
                f"No {MANIFEST_FILE} in data directory {directory!r} (looked for "
                f"{path!r}). Build the data first with `python -m "
                "data_pipeline.build --output_dir=...` and pass its train/ or "
                "eval/ directory; for records made by Google's "
                "create_pretraining_data.py, write their manifest with `python -m "
                "data_pipeline.google_records --input=... --vocab_file=... "
                "--output_dir=...`.")
        with tf.io.gfile.GFile(path) as f:
            try:
                data = json.loads(f.read())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path!r} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path!r} must hold a JSON object. Received: "
                             f"{type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        unknown = sorted(set(data) - fields)
        missing = sorted(required - set(data))
        if unknown or missing:
            raise ValueError(
                f"{path!r} does not match the manifest schema: unknown keys "
                f"{unknown}, missing keys {missing}. Rebuild the data with "
                "`python -m data_pipeline.build`.")
        try:
            _check_types(cls, data)
            return cls(**data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


def _is_plain_name(name: Any) -> bool:
    """True for a file name that stays in its directory (`a.tfrecord`)."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and "/" not in name and "\\" not in name and ":" not in name
            and os.path.basename(name) == name and not os.path.isabs(name))


def _check_condition(condition: dict) -> None:
    """Refuses a manifest `condition` that is not one of the two forms."""
    kind, size = condition.get("kind"), condition.get("size")
    labels = condition.get("labels")
    ok = (set(condition) == {"kind", "size", "labels"}
          and kind in CONDITION_KINDS and isinstance(size, int)
          and not isinstance(size, bool) and size >= 1
          and isinstance(labels, list)
          and all(isinstance(label, str) for label in labels)
          and len(labels) == (size if kind == "class" else 0))
    if not ok:
        raise ValueError(
            "Manifest field `condition` must be {\"kind\": \"class\", \"size\": "
            "N, \"labels\": [N strings]} or {\"kind\": \"vector\", \"size\": N, "
            f"\"labels\": []}}. Received: condition={condition!r}")


def _check_types(cls, data: dict) -> None:
    """Refuses manifest values of the wrong JSON type, naming the field."""
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        hint = hints[name]
        if isinstance(hint, types.UnionType):  # `X | None`: None or an X
            if value is None:
                continue
            hint = next(a for a in hint.__args__ if a is not type(None))
        expected = typing.get_origin(hint) or hint
        if expected is float:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, expected)
        if not ok:
            raise TypeError(f"Manifest field `{name}` must be of type "
                            f"{expected.__name__}. Received: {name}={value!r}")
    for name in ("shard_files", "examples_per_shard"):
        kind = str if name == "shard_files" else int
        for i, item in enumerate(data.get(name) or []):
            if isinstance(item, bool) or not isinstance(item, kind):
                raise TypeError(f"Manifest field `{name}` must hold {kind.__name__} "
                                f"values. Received: {name}[{i}]={item!r}")
