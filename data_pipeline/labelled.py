"""Labelled data for fine-tuning: label lists, fixed-length arrays, tf.data.

    config = ReadConfig(text_field="sentence", label_field="label")
    train = read_examples("train.tsv", config)
    spec = LabelSpec.from_examples(train)           # sorted from train
    arrays = encode(train, tokenizer, spec, max_seq_length=128)
    dataset = finetune_dataset(arrays, 32, training=True, seed=0)

Inputs are Google's `run_classifier.py` layout: `[CLS] a [SEP]` or
`[CLS] a [SEP] b [SEP]`, segment ids 0 up to and including the first
`[SEP]`, 1 after; a pair is truncated longest-first (one token at a time
from the end of the longer text, the second on a tie); a second text with
no token (empty) is left out, as Google's `if tokens_b:` does. Arrays are NumPy:
`input_ids`, `input_mask`, `segment_ids` int32 `(n, max_seq_length)` and
`label`: int32 `(n,)` class ids (single label), float32 `(n, num_labels)`
multi-hot (multi label) or float32 `(n,)` (regression); an unlabelled split
(a test file) has no `label`.

The label list (`labels.json` in the run directory) is given, or the
sorted labels of the train split (numerically when every label is an
integer, so "2" comes before "10").
"""

import dataclasses
import itertools
import json
import os
import time

import numpy as np
from absl import logging

from data_pipeline import atomic
from data_pipeline.labelled_dataset import finetune_dataset, mix_tasks  # noqa: F401
from data_pipeline.labelled_readers import (  # noqa: F401  (the public API)
    INPUT_FORMATS, TASKS, LabelledExamples, ReadConfig, parse_label,
    read_examples)

LABELS_FILE = "labels.json"
FEATURES = ("input_ids", "input_mask", "segment_ids")


def _sorted_labels(labels) -> list[str]:
    labels = set(labels)
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """A task and its label list: the model's outputs, in order.

    Args:
        task: str. "single_label", "multi_label" or "regression". Required.
        labels: tuple[str, ...]. Class names, index = class id; empty for
            regression. Defaults to ().

    Example:
        spec = LabelSpec.from_examples(train)   # or LabelSpec("single_label", ("neg", "pos"))
        spec.save(model_dir)                    # model_dir/labels.json
        assert LabelSpec.load(model_dir) == spec
    """

    task: str
    labels: tuple = ()

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {list(TASKS)}. "
                             f"Received: task={self.task!r}")
        labels = tuple(self.labels)
        object.__setattr__(self, "labels", labels)
        if self.task == "regression":
            if labels:
                raise ValueError(f"--task=regression takes no label list. "
                                 f"Received: labels={list(labels)[:10]}")
            return
        bad = [label for label in labels if not isinstance(label, str) or not label]
        if bad:
            raise ValueError(f"Labels must be non-empty strings. Received: "
                             f"{bad[:5]} in labels={list(labels)[:10]}")
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"The label list repeats {duplicates}: give each label "
                             "once.")
        least = 2 if self.task == "single_label" else 1
        if len(labels) < least:
            raise ValueError(f"--task={self.task} needs at least {least} labels. "
                             f"Received: labels={list(labels)} (the train split has "
                             "only these; check --label_field).")

    @property
    def num_labels(self) -> int:
        """Outputs of the head: 1 for regression, else the number of labels."""
        return 1 if self.task == "regression" else len(self.labels)

    @classmethod
    def from_examples(cls, examples: LabelledExamples) -> "LabelSpec":
        """The sorted labels of a (train) split."""
        if examples.labels is None:
            raise ValueError(f"{examples.source} has no labels: the label list "
                             "comes from a labelled train split.")
        if examples.task == "regression":
            return cls("regression")
        if examples.task == "multi_label":
            names = [label for row in examples.labels for label in row]
        else:
            names = examples.labels
        return cls(examples.task, tuple(_sorted_labels(names)))

    def to_dict(self) -> dict:
        return {"task": self.task, "labels": list(self.labels)}

    def save(self, path: str) -> None:
        """Writes the spec as JSON (atomically); a directory gets `labels.json`."""
        if os.path.isdir(path):
            path = os.path.join(path, LABELS_FILE)
        atomic.write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str) -> "LabelSpec":
        """Reads a spec written by `save` (a directory: its `labels.json`)."""
        if os.path.isdir(path):
            path = os.path.join(path, LABELS_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise ValueError(f"Label list {path!r} cannot be read ({e.strerror}): "
                             "pass a labels.json written by fine-tuning.") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"Label list {path!r} is not JSON ({e.msg}).") from None
        if not isinstance(data, dict) or set(data) != {"task", "labels"}:
            raise ValueError(f"Label list {path!r} must be an object with keys "
                             f"['labels', 'task']. Received: {str(data)[:80]}")
        return cls(data["task"], tuple(data["labels"]))


def label_array(examples: LabelledExamples, spec: LabelSpec) -> np.ndarray:
    """The labels of `examples` as the model's targets (see the module
    docstring).

    Raises:
        ValueError: a label not in `spec`'s list (naming file, line, value).
    """
    if examples.task != spec.task:
        raise ValueError(f"{examples.source} was read for --task={examples.task}, "
                         f"the label list is for --task={spec.task}.")
    if spec.task == "regression":
        return np.asarray(examples.labels, np.float32)
    index = {label: i for i, label in enumerate(spec.labels)}

    def class_id(label, i):
        try:
            return index[label]
        except KeyError:
            shown = list(spec.labels) if len(spec.labels) <= 20 else (
                list(spec.labels[:20]) + ["..."])
            raise ValueError(
                f"{examples.locate(i)}: label {label!r} is not in the label list "
                f"{shown} (the train split's, or the one given). Fix the row, or "
                "give the full list with --labels.") from None

    if spec.task == "single_label":
        return np.fromiter((class_id(label, i) for i, label in
                            enumerate(examples.labels)), np.int32, len(examples))
    hot = np.zeros((len(examples), spec.num_labels), np.float32)
    for i, row in enumerate(examples.labels):
        for label in row:
            hot[i, class_id(label, i)] = 1.0
    return hot


def truncated_lengths(len_a: np.ndarray, len_b: np.ndarray | None,
                      max_seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token counts kept of each text, as Google's `_truncate_seq_pair`.

    Single texts, and pairs whose second text has no token (Google's
    `if tokens_b:`), keep `max_seq_length - 2`. A pair keeps both when they fit
    in `max_seq_length - 3`; otherwise tokens go from the longer text (the
    second on a tie) one at a time, which is: the shorter text is kept when
    it fits in half, else the first keeps `ceil(m / 2)`, the second `m // 2`.

    Returns:
        (kept of a, kept of b), int64 arrays (zeros for b of single texts).
    """
    len_a = np.asarray(len_a, np.int64)
    if len_b is None:
        return np.minimum(len_a, max_seq_length - 2), np.zeros_like(len_a)
    len_b = np.asarray(len_b, np.int64)
    m = max_seq_length - 3
    short = np.minimum(len_a, len_b)
    over = len_a + len_b > m
    keep_short = 2 * short <= m
    a = np.where(over & keep_short & (len_a > len_b), m - len_b, len_a)
    b = np.where(over & keep_short & (len_a <= len_b), m - len_a, len_b)
    a = np.where(over & ~keep_short, m - m // 2, a)
    b = np.where(over & ~keep_short, m // 2, b)
    a = np.where(len_b == 0, np.minimum(len_a, max_seq_length - 2), a)
    return a, b


def _tokenize(tokenizer, texts: list) -> list:
    encode_batch = getattr(tokenizer, "encode_batch", None)
    if encode_batch is not None:  # SentencePiece: one batched C++ call
        return encode_batch(texts)
    return tokenizer.encode_with_starts(texts)[0]


def _place(input_ids: np.ndarray, ids: list, lengths: np.ndarray,
           keep: np.ndarray, first_column: np.ndarray) -> None:
    """Writes the first `keep[i]` of `ids[i]` into row i of `input_ids` from
    column `first_column[i]` on, for every row at once."""
    flat = np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum()))
    rows = np.repeat(np.arange(len(ids)), keep)
    within = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)
    starts = np.cumsum(lengths) - lengths
    input_ids[rows, first_column[rows] + within] = flat[starts[rows] + within]


def pack(ids_a: list, ids_b: list | None, max_seq_length: int, cls_id: int,
         sep_id: int) -> dict:
    """Token ids of each text (and pair) -> fixed-length int32 arrays
    `input_ids`, `input_mask`, `segment_ids` (zero padded)."""
    n = len(ids_a)
    len_a = np.fromiter(map(len, ids_a), np.int64, n)
    len_b = None if ids_b is None else np.fromiter(map(len, ids_b), np.int64, n)
    keep_a, keep_b = truncated_lengths(len_a, len_b, max_seq_length)
    input_ids = np.zeros((n, max_seq_length), np.int32)
    rows = np.arange(n)
    first_sep = keep_a + 1
    input_ids[:, 0] = cls_id
    _place(input_ids, ids_a, len_a, keep_a, np.ones(n, np.int64))
    input_ids[rows, first_sep] = sep_id
    used = first_sep + 1
    if ids_b is not None:  # a second text without tokens adds no [SEP]
        _place(input_ids, ids_b, len_b, keep_b, first_sep + 1)
        paired = keep_b > 0
        used = np.where(paired, first_sep + keep_b + 2, used)
        input_ids[rows[paired], used[paired] - 1] = sep_id
    position = np.arange(max_seq_length)[None, :]
    input_mask = (position < used[:, None]).astype(np.int32)
    segment_ids = ((position > first_sep[:, None]) & (input_mask == 1)).astype(np.int32)
    return {"input_ids": input_ids, "input_mask": input_mask,
            "segment_ids": segment_ids}


def encode(examples: LabelledExamples, tokenizer, spec: LabelSpec | None,
           max_seq_length: int, *, chunk_size: int = 8192) -> dict:
    """Tokenizes and packs a split into NumPy arrays (see the module
    docstring); `label` only when the split is labelled and `spec` given.

    Args:
        examples: LabelledExamples. From `read_examples`.
        tokenizer: a tokenizer of `data_pipeline.tokenization.load_tokenizer`
            (SentencePiece or WordPiece).
        spec: LabelSpec | None. The label list; None encodes inputs only.
        max_seq_length: int. Tokens per example, special tokens included.
        chunk_size: int. Texts per tokenizer call. Defaults to 8192.

    Raises:
        ValueError: `max_seq_length` too small, or a label not in `spec`.
    """
    least = 3 if examples.pairs is not None else 2
    if not isinstance(max_seq_length, int) or max_seq_length <= least:
        raise ValueError(f"--max_seq_length must be an int > {least} (room for "
                         f"[CLS]/[SEP] and a token). Received: "
                         f"max_seq_length={max_seq_length!r}")
    labels = None
    if spec is not None and examples.labels is not None:
        labels = label_array(examples, spec)  # errors before the slow part
    layout = tokenizer.layout
    started = time.perf_counter()
    parts = []
    for start in range(0, len(examples), chunk_size):
        stop = start + chunk_size
        ids_b = (None if examples.pairs is None
                 else _tokenize(tokenizer, examples.pairs[start:stop]))
        parts.append(pack(_tokenize(tokenizer, examples.texts[start:stop]), ids_b,
                          max_seq_length, layout.cls_id, layout.sep_id))
    arrays = {name: np.concatenate([p[name] for p in parts]) for name in FEATURES}
    if labels is not None:
        arrays["label"] = labels
    seconds = time.perf_counter() - started
    full = int((arrays["input_mask"][:, -1] == 1).sum())
    logging.info("%s: %d examples encoded in %.1f s (%.0f/s); %d fill all "
                 "max_seq_length=%d tokens (truncated, or an exact fit).",
                 examples.source, len(examples), seconds,
                 len(examples) / max(seconds, 1e-9), full, max_seq_length)
    return arrays

