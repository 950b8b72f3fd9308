"""TFRecord writing: `tf.train.Example` serialisation and sharded writers.

Records are encoded here with NumPy, a whole batch at a time, in protobuf's
deterministic wire format (features sorted by name, packed lists): the bytes
equal `tf.train.Example.SerializeToString(deterministic=True)`. protobuf's
default serialisation orders the feature map by a per-process hash seed, so
the same records came out as different bytes in different processes.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf


def shard_name(index: int, num_shards: int, compression: str = "") -> str:
    """Returns `shard-00000-of-00004.tfrecord` (`.gz` added for GZIP)."""
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"shard-{index:05d}-of-{num_shards:05d}{suffix}"


@dataclasses.dataclass(frozen=True)
class RecordBatch:
    """Serialised records stored back to back in one bytes object (cheap to
    pickle between processes).

    Args:
        blob: bytes. The records, concatenated.
        offsets: np.ndarray. int64 `[n + 1]`; record i is
            `blob[offsets[i]:offsets[i + 1]]`.
    """

    blob: bytes
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __iter__(self):
        blob, ends = self.blob, self.offsets.tolist()
        return (blob[a:b] for a, b in zip(ends[:-1], ends[1:]))


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                          np.ndarray]:
    """LEB128 varints of int64 `values` `[rows, n]` (negative values as
    10-byte two's complement, as protobuf writes them).

    Returns:
        (bytes, keep, sizes): uint8 `[rows, n * width]` with each value's
        bytes in a `width`-byte slot, bool `[rows, n * width]` marking the
        bytes in use, and int64 `[rows]` bytes in use per row.
    """
    v = np.ascontiguousarray(values, np.int64).view(np.uint64)
    top = int(v.max(initial=0))
    width = max(1, (top.bit_length() + 6) // 7)
    if width == 1:
        return (v.astype(np.uint8), np.ones(v.shape, bool),
                np.full(len(v), v.shape[1], np.int64))
    if top < 2**32:
        v = v.astype(np.uint32)
    groups, keep = [], [np.ones(v.shape, bool)]
    for j in range(width):
        group = ((v >> (7 * j)) & 0x7F).astype(np.uint8)
        if j + 1 < width:
            more = v >= (1 << (7 * (j + 1)))  # a byte j + 1 follows
            group |= more.view(np.uint8) << 7
            keep.append(more)
        groups.append(group)
    rows = len(v)
    sizes = sum(k.sum(axis=1, dtype=np.int64) for k in keep)
    return (np.stack(groups, axis=-1).reshape(rows, -1),
            np.stack(keep, axis=-1).reshape(rows, -1), sizes)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _pick(pieces: list[bytes], which: np.ndarray) -> tuple[np.ndarray,
                                                             np.ndarray,
                                                             np.ndarray]:
    """Row i holds `pieces[which[i]]`: (bytes, keep, sizes) as `_varints`."""
    width = max(len(p) for p in pieces)
    table = np.zeros((len(pieces), width), np.uint8)
    sizes = np.array([len(p) for p in pieces], np.int64)
    for i, piece in enumerate(pieces):
        table[i, :len(piece)] = np.frombuffer(piece, np.uint8)
    keep = np.arange(width) < sizes[:, None]
    return table[which], keep[which], sizes[which]


def _feature_header(name: str, kind: str, payload_size: int) -> bytes:
    """The bytes before a feature's packed values in the `features` map:
    entry tag and length, key, Feature tag and length, list tag and length."""
    key = name.encode()
    values = b"\x0a" + _varint(payload_size)  # Int64List/FloatList.value
    feature = (b"\x1a" if kind == "int" else b"\x12") + _varint(
        len(values) + payload_size)  # Feature.int64_list / .float_list
    entry = (b"\x0a" + _varint(len(key)) + key  # map key
             + b"\x12" + _varint(len(feature) + len(values) + payload_size))
    return (b"\x0a" + _varint(len(entry) + len(feature) + len(values)
                               + payload_size) + entry + feature + values)


def serialize_batch(columns: dict, lengths: dict) -> RecordBatch:
    """Serialises rows of zero-padded feature columns as `tf.train.Example`s.

    Each row is laid out in fixed-width slots (varints take their widest
    size) and a bool mask of the bytes in use compacts all rows at once.

    Args:
        columns: dict. name -> array `[num_rows, length]` (already padded to
            the layout's length).
        lengths: dict. name -> (length, "int"|"float"), as
            `features.feature_lengths` returns; names must match `columns`.

    Returns:
        A RecordBatch of `num_rows` records, bytes equal to
        `tf.train.Example.SerializeToString(deterministic=True)`.

    Raises:
        ValueError: a column is missing, unknown or of the wrong shape.
    """
    if set(columns) != set(lengths):
        raise ValueError(f"Record columns {sorted(columns)} do not match the "
                         f"layout {sorted(lengths)}.")
    num_rows = len(next(iter(columns.values())))
    if not num_rows:
        return RecordBatch(b"", np.zeros(1, np.int64))
    parts = []
    for name in sorted(lengths):  # protobuf's deterministic map order
        length, kind = lengths[name]
        values = np.asarray(columns[name])
        if values.shape != (num_rows, length):
            raise ValueError(f"Feature {name!r} has shape {values.shape}; the "
                             f"layout needs ({num_rows}, {length}).")
        if kind == "float":
            payload = np.ascontiguousarray(values, "<f4").view(np.uint8)
            values_part = (payload, np.ones(payload.shape, bool),
                           np.full(num_rows, 4 * length, np.int64))
        else:
            values_part = _varints(values)
        unique, which = np.unique(values_part[2], return_inverse=True)
        parts.append(_pick([_feature_header(name, kind, size)
                            for size in unique.tolist()], which.ravel()))
        parts.append(values_part)
    body_sizes = sum(part[2] for part in parts)
    unique, which = np.unique(body_sizes, return_inverse=True)
    parts.insert(0, _pick([b"\x0a" + _varint(size) for size in
                           unique.tolist()], which.ravel()))  # .features
    keep = np.concatenate([part[1] for part in parts], axis=1)
    flat = np.concatenate([part[0] for part in parts], axis=1)[keep]
    row_sizes = keep.sum(axis=1, dtype=np.int64)
    return RecordBatch(flat.tobytes(),
                       np.concatenate([[0], np.cumsum(row_sizes)]))


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

    def write_many(self, records: list) -> None:
        """Appends records, each to the next shard in turn (as `write`)."""
        num, first = len(self._writers), self._next
        for j in range(min(num, len(records))):
            shard = (first + j) % num
            write = self._writers[shard].write
            part = records[j::num]
            for record in part:
                write(record)
            self.counts[shard] += len(part)
        self._next = (first + len(records)) % num

    def close(self) -> tuple[list[str], list[int]]:
        """Closes every shard; returns (shard basenames, records per shard)."""
        for writer in self._writers:
            writer.close()
        self._writers = []
        return self.shard_files, self.counts

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Closes every shard, ignoring a close that fails (a full disk
        flushing its buffer): the files are being thrown away."""
        writers, self._writers = self._writers, []
        for writer in writers:
            try:
                writer.close()
            except Exception:  # pylint: disable=broad-except
                pass


class SplitWriter:
    """Shuffles records through a bounded, seeded buffer into a ShardWriter.

    Records enter the buffer one by one; whenever it holds `shuffle_buffer`
    of them, one drawn uniformly (`rng.integers`) goes out to the next shard
    in turn. `close` writes the rest in a `rng.permutation` order. Same
    records and seed give the same bytes in every shard.

    Args:
        directory: str. An existing (temporary) directory.
        num_shards: int. Number of shard files.
        compression: str. "" or "GZIP". Defaults to "".
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

    def write_batch(self, records) -> None:
        """Adds records (a RecordBatch or list) as if one by one, with the
        draws of a full buffer made in one call (a Generator's draws do not
        depend on how they are grouped). The record that entered a full
        buffer is swapped in for the one drawn, which goes out."""
        records = list(records)
        self.count += len(records)
        buffer, last = self._buffer, self._buffer_size - 1
        room = max(0, last - len(buffer))  # Appended without a draw.
        buffer.extend(records[:room])
        rest = records[room:]
        if not rest:
            return
        out = []
        for record, i in zip(rest, self._rng.integers(
                self._buffer_size, size=len(rest)).tolist()):
            if i < last:  # Swap it in for buffer[i], which goes out.
                out.append(buffer[i])
                buffer[i] = record
            else:
                out.append(record)
        self._writer.write_many(out)

    def close(self) -> tuple[list[str], list[int]]:
        """Writes the buffer out in a seeded random order and closes shards."""
        buffer = self._buffer
        self._writer.write_many([buffer[i] for i in self._rng.permutation(
            len(buffer)).tolist()])
        self._buffer = []
        return self._writer.close()

    def abort(self) -> None:
        """Closes the shard files without flushing the buffer."""
        self._buffer = []
        self._writer.abort()
