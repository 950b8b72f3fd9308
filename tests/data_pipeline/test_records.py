import os

import numpy as np
import tensorflow as tf

from data_pipeline import features
from data_pipeline import records
from tests.data_pipeline import reference


def test_serialize_matches_google_layout():
    lengths = features.feature_lengths("mlm", "static", 8, 3)
    batch = records.serialize_batch({
        "input_ids": [[2, 7, 4, 9, 3, 0, 0, 0]],
        "input_mask": [[1] * 5 + [0] * 3], "segment_ids": np.zeros((1, 8)),
        "masked_lm_positions": [[2, 0, 0]], "masked_lm_ids": [[8, 0, 0]],
        "masked_lm_weights": [[1.0, 0, 0]]}, lengths)
    (blob,) = list(batch)
    parsed = tf.io.parse_single_example(
        blob, features.mlm_static_feature_spec(8, 3))
    np.testing.assert_array_equal(parsed["input_ids"], [2, 7, 4, 9, 3, 0, 0, 0])
    np.testing.assert_array_equal(parsed["input_mask"], [1] * 5 + [0] * 3)
    np.testing.assert_array_equal(parsed["masked_lm_positions"], [2, 0, 0])
    np.testing.assert_array_equal(parsed["masked_lm_ids"], [8, 0, 0])
    np.testing.assert_array_equal(parsed["masked_lm_weights"], [1, 0, 0])
    assert parsed["input_ids"].dtype == tf.int64


def test_zero_record_is_the_smallest_record_of_each_layout():
    for layout in (("mlm", "static", True), ("mlm", "dynamic", False),
                   ("seq2seq", "none", False), ("lm", "none", False)):
        task, masking, nsp = layout
        lengths = features.feature_lengths(task, masking, 8, 3, nsp)
        zero = features.zero_record(lengths)
        spec = {name: tf.io.FixedLenFeature(
            [n], tf.float32 if kind == "float" else tf.int64)
            for name, (n, kind) in lengths.items()}
        parsed = tf.io.parse_single_example(zero, spec)
        assert sorted(parsed) == sorted(lengths)
        assert all(not v.numpy().any() for v in parsed.values())
        assert zero == records.serialize_batch(
            reference.pad_rows([{n: [] for n in lengths}], lengths),
            lengths).blob
        assert len(zero) < len(reference.example_bytes(
            {n: [300] for n in lengths}, lengths))  # a 2-byte varint


def _read(directory, files):
    return [[r.numpy() for r in tf.data.TFRecordDataset(
        os.path.join(directory, f))] for f in files]


def test_split_writer_shuffles_deterministically(tmp_path):
    def write(name, seed):
        directory = tmp_path / name
        directory.mkdir()
        writer = records.SplitWriter(str(directory), 3, shuffle_buffer=16,
                                     seed=seed)
        writer.write_batch([str(i).encode() for i in range(100)])
        files, counts = writer.close()
        assert files == [records.shard_name(i, 3) for i in range(3)]
        assert counts == [34, 33, 33]
        return _read(directory, files)

    a, b, c = write("a", 1), write("b", 1), write("c", 2)
    assert a == b and a != c
    flat = sorted(int(r) for shard in a for r in shard)
    assert flat == list(range(100))
    assert [int(r) for r in a[0][:10]] != list(range(0, 30, 3))


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
    batch = records.serialize_batch(reference.pad_rows(rows, lengths), lengths)
    assert len(batch) == len(rows)
    for row, blob in zip(rows, batch):
        assert blob == reference.example_bytes(row, lengths)
    assert batch.offsets[-1] == len(batch.blob)
    assert len(records.serialize_batch(
        reference.pad_rows([], lengths), lengths)) == 0


def test_write_batch_equals_one_by_one_reference(tmp_path):
    data = [str(i).encode() for i in range(200)]
    order = reference.shuffled_order(data, 16, seed=4)
    for cuts in (((0, 200),),
                 ((0, 5), (5, 15), (15, 16), (16, 90), (90, 200))):
        directory = tmp_path / str(len(cuts))
        directory.mkdir()
        writer = records.SplitWriter(str(directory), 3, shuffle_buffer=16,
                                     seed=4)
        for start, end in cuts:  # a list, or RecordBatches
            part = data[start:end]
            writer.write_batch(part if len(cuts) == 1 else records.RecordBatch(
                b"".join(part), np.cumsum([0] + [len(r) for r in part])))
        files, counts = writer.close()
        assert writer.count == 200 and counts == [67, 67, 66]
        assert _read(directory, files) == [order[k::3] for k in range(3)]
    # What write_batch relies on, at the default buffer size too.
    for bound in (16, 100_000):
        one = np.random.default_rng(3)
        many = np.random.default_rng(3)
        assert ([int(one.integers(bound)) for _ in range(50)]
                == many.integers(bound, size=50).tolist())
