"""TFRecord writing: `tf.train.Example` serialisation and sharded writers."""

import os

import numpy as np
import tensorflow as tf

from data_pipeline import masking


def shard_name(index: int, num_shards: int, compression: str = "") -> str:
    """Returns `shard-00000-of-00004.tfrecord` (`.gz` added for GZIP)."""
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"shard-{index:05d}-of-{num_shards:05d}{suffix}"


def _int64(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _padded(values, length: int) -> np.ndarray:
    out = np.zeros(length, np.int64)
    out[:len(values)] = values
    return out


def serialize_example(masked: masking.MaskedInstance, segment_ids, *,
                      max_seq_length: int, max_predictions_per_seq: int,
                      next_sentence_label: int | None = None) -> bytes:
    """Serialises one masked instance in Google's MLM record layout.

    Args:
        masked: masking.MaskedInstance. The sequence and its targets.
        segment_ids: int array-like `[n]`, matching `masked.input_ids`.
        max_seq_length: int. L; sequence features are zero padded to it.
        max_predictions_per_seq: int. P; `masked_lm_*` length.
        next_sentence_label: int | None. Adds `next_sentence_labels` if set.

    Returns:
        The serialised `tf.train.Example`.
    """
    return example_proto(
        masked, segment_ids, max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq,
        next_sentence_label=next_sentence_label).SerializeToString()


def example_proto(masked: masking.MaskedInstance, segment_ids, *,
                  max_seq_length: int, max_predictions_per_seq: int,
                  next_sentence_label: int | None = None) -> tf.train.Example:
    """Builds the `tf.train.Example` that `serialize_example` serialises.

    Args:
        masked: masking.MaskedInstance. The sequence and its targets.
        segment_ids: int array-like `[n]`, matching `masked.input_ids`.
        max_seq_length: int. L; sequence features are zero padded to it.
        max_predictions_per_seq: int. P; `masked_lm_*` length.
        next_sentence_label: int | None. Adds `next_sentence_labels` if set.
    """
    columns = _columns(masked, segment_ids, max_seq_length,
                       max_predictions_per_seq, next_sentence_label)
    feature = {}
    for name, values in columns.items():
        if name == "masked_lm_weights":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(
                value=values.tolist()))
        else:
            feature[name] = _int64(values.tolist())
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _columns(masked, segment_ids, max_seq_length, max_predictions_per_seq,
             next_sentence_label) -> dict:
    n = len(masked.input_ids)
    if n > max_seq_length:
        raise ValueError(f"Instance of length {n} exceeds max_seq_length="
                         f"{max_seq_length}.")
    if len(masked.masked_lm_ids) != max_predictions_per_seq:
        raise ValueError(f"Instance has {len(masked.masked_lm_ids)} prediction "
                         f"slots; expected max_predictions_per_seq="
                         f"{max_predictions_per_seq}.")
    mask = np.zeros(max_seq_length, np.int64)
    mask[:n] = 1
    columns = {
        "input_ids": _padded(masked.input_ids, max_seq_length),
        "input_mask": mask,
        "segment_ids": _padded(np.asarray(segment_ids), max_seq_length),
        "masked_lm_positions": np.asarray(masked.masked_lm_positions, np.int64),
        "masked_lm_ids": np.asarray(masked.masked_lm_ids, np.int64),
        "masked_lm_weights": np.asarray(masked.masked_lm_weights, np.float32),
    }
    if next_sentence_label is not None:
        columns["next_sentence_labels"] = np.array([next_sentence_label],
                                                   np.int64)
    return columns


def serialize_columns(columns: dict, lengths: dict) -> bytes:
    """Serialises zero-padded feature columns as a `tf.train.Example`.

    Args:
        columns: dict. name -> 1-D values (shorter values are zero padded).
        lengths: dict. name -> (length, "int"|"float"), as
            `features.feature_lengths` returns; names must match `columns`.

    Raises:
        ValueError: a column is missing, unknown or longer than its length.
    """
    if set(columns) != set(lengths):
        raise ValueError(f"Record columns {sorted(columns)} do not match the "
                         f"layout {sorted(lengths)}.")
    feature = {}
    for name, (length, kind) in lengths.items():
        values = np.asarray(columns[name])
        if len(values) > length:
            raise ValueError(f"Feature {name!r} has {len(values)} values; the "
                             f"layout allows {length}.")
        if kind == "float":
            out = np.zeros(length, np.float32)
            out[:len(values)] = values
            feature[name] = tf.train.Feature(
                float_list=tf.train.FloatList(value=out.tolist()))
        else:
            feature[name] = _int64(_padded(values, length).tolist())
    return tf.train.Example(features=tf.train.Features(
        feature=feature)).SerializeToString()


def zero_record(lengths: dict) -> bytes:
    """An all-zero record of any layout (`features.feature_lengths`)."""
    return serialize_columns({n: [] for n in lengths}, lengths)


def zero_example(max_seq_length: int, max_predictions_per_seq: int,
                 next_sentence: bool = False) -> bytes:
    """An all-zero record (zero `masked_lm_weights`): padding that counts
    for nothing.

    Args:
        max_seq_length: int. L.
        max_predictions_per_seq: int. P.
        next_sentence: bool. Include `next_sentence_labels`.
    """
    zeros = np.zeros(max_predictions_per_seq, np.int32)
    empty = masking.MaskedInstance(np.zeros(0, np.int32), zeros, zeros,
                                   zeros.astype(np.float32), 0)
    return serialize_example(
        empty, np.zeros(0, np.int32), max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq,
        next_sentence_label=0 if next_sentence else None)


class ShardWriter:
    """Writes serialised records round-robin over `num_shards` files.

    Use as a context manager; `close()` returns the shard basenames and the
    number of records in each.

    Args:
        directory: str. An existing (temporary) directory.
        num_shards: int. Number of shard files.
        compression: str. "" or "GZIP". Defaults to "".
    """

    def __init__(self, directory: str, num_shards: int, compression: str = ""):
        if num_shards < 1:
            raise ValueError(f"`num_shards` must be >= 1. Received: "
                             f"num_shards={num_shards}")
        self.shard_files = [shard_name(i, num_shards, compression)
                            for i in range(num_shards)]
        options = tf.io.TFRecordOptions(compression_type=compression or None)
        self._writers = [
            tf.io.TFRecordWriter(os.path.join(directory, name), options)
            for name in self.shard_files]
        self.counts = [0] * num_shards
        self._next = 0

    def write(self, record: bytes) -> None:
        """Appends one serialised record to the next shard in turn."""
        self._writers[self._next].write(record)
        self.counts[self._next] += 1
        self._next = (self._next + 1) % len(self._writers)

    def close(self) -> tuple[list[str], list[int]]:
        """Closes every shard; returns (shard basenames, records per shard)."""
        for writer in self._writers:
            writer.close()
        self._writers = []
        return self.shard_files, self.counts

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        for writer in self._writers:
            writer.close()
        self._writers = []


class SplitWriter:
    """Shuffles records through a bounded, seeded buffer into a ShardWriter.

    Same records and seed give the same bytes in every shard.

    Args:
        directory: str. An existing (temporary) directory.
        num_shards: int. Number of shard files.
        compression: str. "" or "GZIP".
        shuffle_buffer: int. Records held for shuffling. Defaults to 100,000.
        seed: int | list[int]. Seed of the shuffle. Defaults to 0.
    """

    def __init__(self, directory: str, num_shards: int, compression: str = "",
                 *, shuffle_buffer: int = 100_000, seed=0):
        if shuffle_buffer < 1:
            raise ValueError(f"`shuffle_buffer` must be >= 1. Received: "
                             f"shuffle_buffer={shuffle_buffer}")
        self.directory = directory
        self.count = 0
        self._rng = np.random.default_rng(seed)
        self._buffer = []
        self._buffer_size = shuffle_buffer
        self._writer = ShardWriter(directory, num_shards, compression)

    def write(self, record: bytes) -> None:
        """Adds a record; once the buffer is full, writes a random one out."""
        self.count += 1
        self._buffer.append(record)
        if len(self._buffer) >= self._buffer_size:
            i = int(self._rng.integers(len(self._buffer)))
            self._buffer[i], self._buffer[-1] = self._buffer[-1], self._buffer[i]
            self._writer.write(self._buffer.pop())

    def close(self) -> tuple[list[str], list[int]]:
        """Writes the buffer out in a seeded random order and closes shards."""
        for i in self._rng.permutation(len(self._buffer)).tolist():
            self._writer.write(self._buffer[i])
        self._buffer = []
        return self._writer.close()

    def abort(self) -> None:
        """Closes the shard files without flushing the buffer."""
        self._buffer = []
        self._writer.__exit__(None, None, None)
