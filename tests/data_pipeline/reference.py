"""Scalar references of the data build: one document, one record, one
record at a time, written plainly, for the tests of the batched library.

  create_instances   `instances.pack_documents`, one document at a time
  example_bytes      `records.serialize_batch`, one record through protobuf
  pad_rows           per-record columns into the batch form of serialize_batch
  read_documents     the text corpus format (`sources.read_documents`)
  shuffled_order     the order `records.SplitWriter` writes records in

(The masking reference is `masking_reference`.)
"""

import collections

import numpy as np
import tensorflow as tf

from data_pipeline import corpus
from data_pipeline import features

Instance = collections.namedtuple("Instance",
                                  ["tokens", "word_starts", "segment_ids"])


def create_instances(sentences: list, word_starts: list,
                     rng: np.random.Generator, *, max_seq_length: int,
                     short_seq_prob: float = 0.1,
                     cls_id: int = features.CLS_ID,
                     sep_id: int = features.SEP_ID) -> list:
    """`[CLS] tokens [SEP]` instances of one document, in order.

    Sentences are joined into one stream; each instance takes a target of
    L - 2 tokens, or with `short_seq_prob` (one `rng.random()`) a target
    drawn by `rng.integers(2, L - 1)`; the last one takes what is left. The
    first token of an instance always starts a word.
    """
    stream = [int(t) for s in sentences for t in s]
    starts = [bool(w) for ws in word_starts for w in ws]
    max_tokens = max_seq_length - 2
    out, pos = [], 0
    while pos < len(stream):
        target = max_tokens
        if max_tokens > 2 and rng.random() < short_seq_prob:
            target = int(rng.integers(2, max_tokens + 1))
        chunk = stream[pos:pos + target]
        chunk_starts = [True] + starts[pos + 1:pos + len(chunk)]
        out.append(Instance(
            np.array([cls_id] + chunk + [sep_id], np.int32),
            np.array([True] + chunk_starts + [True]),
            np.zeros(len(chunk) + 2, np.int32)))
        pos += target
    return out


def example_bytes(columns: dict, lengths: dict) -> bytes:
    """protobuf's own deterministic serialisation (features sorted by key)
    of one record's columns, zero padded to `lengths`."""
    feature = {}
    for name, (n, kind) in lengths.items():
        values = np.zeros(n, np.float32 if kind == "float" else np.int64)
        values[:len(columns[name])] = columns[name]
        if kind == "float":
            feature[name] = tf.train.Feature(
                float_list=tf.train.FloatList(value=values.tolist()))
        else:
            feature[name] = tf.train.Feature(
                int64_list=tf.train.Int64List(value=values.tolist()))
    return tf.train.Example(features=tf.train.Features(
        feature=feature)).SerializeToString(deterministic=True)


def masked_example(masked, segment_ids, *, max_seq_length: int,
                   max_predictions_per_seq: int,
                   next_sentence_label: int | None = None) -> bytes:
    """One statically masked record in Google's layout from a masked
    sequence (`masking_reference.Masked` fields) and its segment ids."""
    n = len(masked.input_ids)
    columns = {"input_ids": masked.input_ids,
               "input_mask": np.ones(n, np.int64),
               "segment_ids": segment_ids,
               "masked_lm_positions": masked.masked_lm_positions,
               "masked_lm_ids": masked.masked_lm_ids,
               "masked_lm_weights": masked.masked_lm_weights}
    if next_sentence_label is not None:
        columns["next_sentence_labels"] = [next_sentence_label]
    return example_bytes(columns, features.feature_lengths(
        "mlm", "static", max_seq_length, max_predictions_per_seq,
        next_sentence_label is not None))


def pad_rows(rows: list[dict], lengths: dict) -> dict:
    """Stacks per-record columns (1-D, possibly shorter) into zero-padded
    `[len(rows), length]` arrays, the input of `records.serialize_batch`."""
    out = {}
    for name, (length, kind) in lengths.items():
        out[name] = np.zeros((len(rows), length),
                             np.float32 if kind == "float" else np.int64)
        for i, row in enumerate(rows):
            out[name][i, :len(row[name])] = row[name]
    return out


def read_documents(patterns) -> list[list[str]]:
    """Documents of corpus files (sorted globs): one sentence a line, blank
    lines between documents, never across files."""
    docs = []
    for path in corpus.list_files(patterns):
        with open(path, encoding="utf-8") as f:
            docs.extend(corpus.documents_from_lines(f))
    return docs


def shuffled_order(records: list, buffer_size: int, seed) -> list:
    """The order `SplitWriter` writes `records` in: one by one into a
    buffer; whenever it is full, a uniformly drawn one is swapped with the
    last and written; at the end the rest in a permutation's order."""
    rng = np.random.default_rng(seed)
    buffer, out = [], []
    for record in records:
        buffer.append(record)
        if len(buffer) >= buffer_size:
            i = int(rng.integers(len(buffer)))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            out.append(buffer.pop())
    return out + [buffer[i] for i in rng.permutation(len(buffer)).tolist()]
