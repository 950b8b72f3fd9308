"""Shuffling and sharding of records: one definition for every builder.

Each record gets a 64-bit key, a pure function of (seed, split, unit index,
record index inside the unit) (MurmurHash3's 64-bit finaliser chained over
the four numbers). Its shard is `key % num_shards`, and inside a shard
records are sorted by (key, record bytes). Nothing depends on the order in
which units finish, on the number of processes or on the machine that made
a record, so the local builder (`builder`, one process pool) and the Beam
pipeline (`beam_build`, any runner) write the same bytes.

The local builder does not hold the corpus in memory: `SpillWriter` appends
`(key, record)` entries to one spill file per shard, then sorts and writes
the shards one at a time (`write_shard`), so peak memory is about the
largest shard. A spill entry is the key (8 bytes, little endian), the record
length (4 bytes) and the record.
"""

import os
import struct

import numpy as np
import tensorflow as tf

from data_pipeline import records

_MASK = (1 << 64) - 1
_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_ENTRY = struct.Struct("<QI")
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


def write_shard(path: str, entries: list, compression: str = "") -> int:
    """Writes one shard: `entries` (key, record) sorted by key (ties by
    record bytes), through `tf.io` (local paths and URLs, GZIP).

    Returns:
        The number of records written.
    """
    entries.sort()
    options = tf.io.TFRecordOptions(compression_type=compression or None)
    with tf.io.TFRecordWriter(path, options) as writer:
        for _, record in entries:
            writer.write(record)
    return len(entries)


def read_spill(path: str) -> list:
    """(key, record) entries of a spill file (empty list if absent)."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    entries, offset, end = [], 0, len(data)
    unpack = _ENTRY.unpack_from
    while offset < end:
        key, size = unpack(data, offset)
        offset += _ENTRY.size
        entries.append((key, data[offset:offset + size]))
        offset += size
    return entries


class SpillWriter:
    """Writes one split's shards through per-shard spill files.

    `add` files a unit's records under their shards (entries buffered up to
    32 MB in all, then appended to `spill_dir/spill-NNNNN`); `close` sorts
    and writes each shard in turn and removes its spill file.

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
        self._buffers = {}
        self._buffered = 0

    def _spill_path(self, shard: int) -> str:
        return os.path.join(self._spill_dir, f"spill-{shard:05d}")

    def add(self, unit: int, batch) -> None:
        """Files the records (RecordBatch or list) unit `unit` made."""
        keys = record_keys(self._seed, self._split, unit, len(batch))
        self.count += len(batch)
        pack = _ENTRY.pack
        for shard, entries in by_shard(keys, batch, self._num_shards).items():
            parts = self._buffers.setdefault(shard, [])
            for key, record in entries:
                parts.append(pack(key, len(record)))
                parts.append(record)
                self._buffered += len(record) + _ENTRY.size
        if self._buffered >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        for shard, parts in sorted(self._buffers.items()):
            with open(self._spill_path(shard), "ab") as f:
                f.write(b"".join(parts))
        self._buffers, self._buffered = {}, 0

    def close(self) -> tuple[list[str], list[int]]:
        """Sorts and writes every shard; returns (basenames, records each)."""
        self._flush()
        names, counts = [], []
        for shard in range(self._num_shards):
            name = records.shard_name(shard, self._num_shards,
                                      self._compression)
            spill = self._spill_path(shard)
            counts.append(write_shard(os.path.join(self.directory, name),
                                      read_spill(spill), self._compression))
            names.append(name)
            if os.path.exists(spill):
                os.remove(spill)
        return names, counts

    def abort(self) -> None:
        """Drops buffered entries (the caller removes the directories)."""
        self._buffers, self._buffered = {}, 0
