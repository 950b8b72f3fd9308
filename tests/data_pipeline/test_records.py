import os

import numpy as np
import tensorflow as tf

from data_pipeline import features
from data_pipeline import masking
from data_pipeline import records


def test_serialize_matches_google_layout():
    m = masking.MaskedInstance(
        np.array([2, 7, 4, 9, 3], np.int32), np.array([2, 0, 0], np.int32),
        np.array([8, 0, 0], np.int32), np.array([1, 0, 0], np.float32), 1)
    blob = records.serialize_example(m, np.zeros(5, np.int32), max_seq_length=8,
                                     max_predictions_per_seq=3)
    parsed = tf.io.parse_single_example(
        blob, features.mlm_static_feature_spec(8, 3))
    np.testing.assert_array_equal(parsed["input_ids"], [2, 7, 4, 9, 3, 0, 0, 0])
    np.testing.assert_array_equal(parsed["input_mask"], [1] * 5 + [0] * 3)
    np.testing.assert_array_equal(parsed["masked_lm_positions"], [2, 0, 0])
    np.testing.assert_array_equal(parsed["masked_lm_ids"], [8, 0, 0])
    np.testing.assert_array_equal(parsed["masked_lm_weights"], [1, 0, 0])
    assert parsed["input_ids"].dtype == tf.int64
    zero = tf.io.parse_single_example(
        records.zero_example(8, 3, next_sentence=True),
        features.mlm_static_feature_spec(8, 3, next_sentence=True))
    assert all(not v.numpy().any() for v in zero.values())


def test_split_writer_shuffles_deterministically(tmp_path):
    def write(name, seed):
        directory = tmp_path / name
        directory.mkdir()
        writer = records.SplitWriter(str(directory), 3, shuffle_buffer=16,
                                     seed=seed)
        for i in range(100):
            writer.write(str(i).encode())
        files, counts = writer.close()
        assert files == [records.shard_name(i, 3) for i in range(3)]
        assert counts == [34, 33, 33]
        return [[r.numpy() for r in tf.data.TFRecordDataset(
            os.path.join(directory, f))] for f in files]

    a, b, c = write("a", 1), write("b", 1), write("c", 2)
    assert a == b and a != c
    flat = sorted(int(r) for shard in a for r in shard)
    assert flat == list(range(100))
    assert [int(r) for r in a[0][:10]] != list(range(0, 30, 3))


def _reference_bytes(columns, lengths):
    """protobuf's own deterministic serialisation (features sorted by key)."""
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


def test_serialize_batch_matches_protobuf():
    rng = np.random.default_rng(0)
    lengths = features.feature_lengths("mlm", "static", 32, 5, True)
    rows = []
    for i in range(60):  # 1- to 10-byte varints, negative ids, short rows
        n = int(rng.integers(0, 33))
        high = [2, 200, 30_000, 2**40, 2**62][i % 5]
        rows.append({
            "input_ids": rng.integers(0, high, n),
            "input_mask": np.ones(n), "segment_ids": rng.integers(0, 2, n),
            "masked_lm_positions": rng.integers(0, 32, 5),
            "masked_lm_ids": rng.integers(-3 if i % 7 == 0 else 0, high, 5),
            "masked_lm_weights": rng.random(5).astype(np.float32),
            "next_sentence_labels": [i % 2]})
    batch = records.serialize_batch(records.pad_rows(rows, lengths), lengths)
    assert len(batch) == len(rows)
    for row, blob in zip(rows, batch):
        assert blob == _reference_bytes(row, lengths)
        assert records.serialize_columns(row, lengths) == blob
    restored = records.RecordBatch.from_records(list(batch))
    assert restored.blob == batch.blob
    np.testing.assert_array_equal(restored.offsets, batch.offsets)
    assert len(records.serialize_batch(
        records.pad_rows([], lengths), lengths)) == 0


def test_write_batch_equals_write(tmp_path):
    def write(name, batched):
        directory = tmp_path / name
        directory.mkdir()
        writer = records.SplitWriter(str(directory), 3, shuffle_buffer=16,
                                     seed=4)
        data = [str(i).encode() for i in range(200)]
        if batched:
            for start, end in ((0, 5), (5, 15), (15, 16), (16, 90), (90, 200)):
                writer.write_batch(records.RecordBatch.from_records(
                    data[start:end]))
        else:
            for record in data:
                writer.write(record)
        files, counts = writer.close()
        assert writer.count == 200
        return counts, [open(directory / f, "rb").read() for f in files]

    assert write("one_by_one", False) == write("batched", True)
    # What write_batch relies on, at the default buffer size too.
    for bound in (16, 100_000):
        one = np.random.default_rng(3)
        many = np.random.default_rng(3)
        assert ([int(one.integers(bound)) for _ in range(50)]
                == many.integers(bound, size=50).tolist())
