"""Shuffling and sharding of records: one definition for every builder.

Each record gets a 64-bit key, a pure function of (seed, split, unit index,
record index inside the unit) (MurmurHash3's 64-bit finaliser chained over
the four numbers). Its shard is `key % num_shards`, and inside a shard
records are sorted by (key, record bytes). Nothing depends on the order in
which units finish, on the number of processes or on the machine that made
a record, so the local builder (`builder`, one process pool) and the Beam
pipeline (`beam_build`, any runner) write the same bytes.

The local builder does not hold the corpus in memory: `SpillWriter` appends
each unit's records to per-shard spill files (the records back to back, and
an index of their keys and lengths), then sorts and writes the shards one at
a time, so peak memory is about the largest shard.
"""

import os

import numpy as np
import tensorflow as tf

from data_pipeline import records

_MASK = (1 << 64) - 1
_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_INDEX = np.dtype([("key", "<u8"), ("length", "<u4")])
# Spill entries buffered in memory (bytes, all shards) before an append.
_FLUSH_BYTES = 32 << 20


def _fmix(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(33))
    x = x * _C1
    x = x ^ (x >> np.uint64(33))
    x = x * _C2
    return x ^ (x >> np.uint64(33))


def record_keys(seed: int, split_index: int, unit: int,
                count: int) -> np.ndarray:
    """Keys of records 0 … count - 1 of a unit's split.

    Args:
        seed: int. Build seed.
        split_index: int. 0 train, 1 eval.
        unit: int. Work-unit index.
        count: int. Records the unit made for the split.

    Returns:
        uint64 `[count]`.
    """
    with np.errstate(over="ignore"):
        base = np.uint64(0)
        for part in (seed, split_index, unit):
            base = _fmix(np.array([base ^ np.uint64(part & _MASK)],
                                  np.uint64))[0]
        return _fmix(np.uint64(base) ^ np.arange(count, dtype=np.uint64))


def shards_of(keys: np.ndarray, num_shards: int) -> np.ndarray:
    """Shard index of each key: `key % num_shards` (int64)."""
    return (keys % np.uint64(num_shards)).astype(np.int64)


def by_shard(keys: np.ndarray, batch, num_shards: int) -> dict:
    """{shard: [(key, record), ...]} of one unit's split (`batch` a
    `records.RecordBatch` or list of records, aligned with `keys`)."""
    out = {}
    shard = shards_of(keys, num_shards).tolist()
    for s, key, record in zip(shard, keys.tolist(), batch):
        out.setdefault(s, []).append((key, record))
    return out


def shard_order(keys: np.ndarray, records_bytes) -> np.ndarray:
    """The order of a shard's records: by key, equal keys (a 2^-64 event)
    by record bytes, so the order never depends on arrival."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
        key_list = keys.tolist()
        order = np.array(sorted(range(len(key_list)), key=lambda i: (
            key_list[i], records_bytes[i])), np.int64)
    return order


def write_shard(path: str, entries: list, compression: str = "") -> int:
    """Writes one shard from `(key, record)` entries in `shard_order`,
    through `tf.io` (local paths and URLs, GZIP).

    Returns:
        The number of records written.
    """
    keys = np.fromiter((key for key, _ in entries), np.uint64, len(entries))
    return _write_records(path, keys, [record for _, record in entries],
                          compression)


def _write_records(path, keys, records_bytes, compression) -> int:
    options = tf.io.TFRecordOptions(compression_type=compression or None)
    with tf.io.TFRecordWriter(path, options) as writer:
        write = writer.write
        for i in shard_order(keys, records_bytes).tolist():
            write(records_bytes[i])
    return len(records_bytes)


def _split_blob(blob: bytes, lengths: np.ndarray) -> list:
    ends = np.cumsum(lengths).tolist()
    return [blob[a:b] for a, b in zip([0] + ends[:-1], ends)]


class SpillWriter:
    """Writes one split's shards through per-shard spill files.

    `add` files a unit's records under their shards (buffered up to 32 MB in
    all, then appended to `spill_dir/spill-NNNNN.data`, with each record's
    key and length in `spill-NNNNN.index`); `close` sorts and writes each
    shard in turn and removes its spill files.

    Args:
        directory: str. Where the shards go (local path or URL; it exists).
        spill_dir: str. An existing local directory for the spill files.
        num_shards: int. Number of shard files.
        seed: int. Build seed (record keys).
        split_index: int. 0 train, 1 eval (record keys).
        compression: str. "" or "GZIP". Defaults to "".
    """

    def __init__(self, directory: str, spill_dir: str, num_shards: int,
                 seed: int, split_index: int, compression: str = ""):
        if num_shards < 1:
            raise ValueError(f"`num_shards` must be >= 1. Received: "
                             f"num_shards={num_shards}")
        self.directory = directory
        self.count = 0
        self._spill_dir = spill_dir
        self._num_shards = num_shards
        self._seed, self._split = seed, split_index
        self._compression = compression
        self._buffers = {}  # shard -> ([index arrays], [data bytes])
        self._buffered = 0

    def _spill_path(self, shard: int, part: str) -> str:
        return os.path.join(self._spill_dir, f"spill-{shard:05d}.{part}")

    def add(self, unit: int, batch) -> None:
        """Files the records (RecordBatch or list) unit `unit` made."""
        if not isinstance(batch, records.RecordBatch):
            lengths = np.array([len(r) for r in batch], np.int64)
            batch = records.RecordBatch(
                b"".join(batch), np.concatenate([[0], np.cumsum(lengths)]))
        num = len(batch)
        if not num:
            return
        self.count += num
        keys = record_keys(self._seed, self._split, unit, num)
        shard = shards_of(keys, self._num_shards)
        lengths = np.diff(batch.offsets)
        order = np.argsort(shard, kind="stable")  # records grouped by shard
        per_shard = np.bincount(shard, minlength=self._num_shards)
        index = np.empty(num, _INDEX)
        index["key"], index["length"] = keys[order], lengths[order]
        blob, offsets, order = batch.blob, batch.offsets.tolist(), order.tolist()
        first, size = 0, 0
        for s in np.flatnonzero(per_shard).tolist():
            end = first + int(per_shard[s])
            data = b"".join([blob[offsets[i]:offsets[i + 1]]
                             for i in order[first:end]])
            parts = self._buffers.setdefault(s, ([], []))
            parts[0].append(index[first:end])
            parts[1].append(data)
            first, size = end, size + len(data)
        self._buffered += size + index.nbytes
        if self._buffered >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        for shard, (index, data) in sorted(self._buffers.items()):
            with open(self._spill_path(shard, "index"), "ab") as f:
                f.write(np.concatenate(index).tobytes())
            with open(self._spill_path(shard, "data"), "ab") as f:
                f.write(b"".join(data))
        self._buffers, self._buffered = {}, 0

    def _read(self, shard: int):
        path = self._spill_path(shard, "index")
        if not os.path.exists(path):
            return np.zeros(0, np.uint64), []
        index = np.fromfile(path, _INDEX)
        with open(self._spill_path(shard, "data"), "rb") as f:
            data = f.read()
        return index["key"], _split_blob(data, index["length"])

    def close(self) -> tuple[list[str], list[int]]:
        """Sorts and writes every shard; returns (basenames, records each)."""
        self._flush()
        names, counts = [], []
        for shard in range(self._num_shards):
            name = records.shard_name(shard, self._num_shards,
                                      self._compression)
            keys, shard_records = self._read(shard)
            counts.append(_write_records(os.path.join(self.directory, name),
                                         keys, shard_records,
                                         self._compression))
            names.append(name)
            for part in ("index", "data"):
                if os.path.exists(self._spill_path(shard, part)):
                    os.remove(self._spill_path(shard, part))
        return names, counts

    def abort(self) -> None:
        """Drops buffered entries (the caller removes the directories)."""
        self._buffers, self._buffered = {}, 0
