import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import builder
from data_pipeline import corpus
from data_pipeline import features
from data_pipeline import google_records
from data_pipeline import input as input_lib
from data_pipeline import nsp
from data_pipeline import sources
from data_pipeline import tasks
from tests.data_pipeline import test_google_records

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _doc(base, lengths):
    return [(np.arange(base + sum(lengths[:k]), base + sum(lengths[:k + 1]),
                       dtype=np.int32), np.ones(n, bool))
            for k, n in enumerate(lengths)]


def test_nsp_pair_statistics():
    rng = np.random.default_rng(0)
    docs = [_doc(1000 * (d + 1), [3, 4, 2, 5] * 8) for d in range(40)]
    labels, lengths = {0.0: [], 0.5: []}, []
    for short_seq_prob in (0.0, 0.5, 0.0):
        for d in range(len(docs)):
            for inst in nsp.create_pair_instances(
                    docs, d, rng, max_seq_length=32,
                    short_seq_prob=short_seq_prob,
                    cls_id=2, sep_id=3):
                t, seg = inst.tokens, inst.segment_ids
                assert len(t) <= 32 and t[0] == 2 and t[-1] == 3
                first_sep = int(np.flatnonzero(t == 3)[0])
                np.testing.assert_array_equal(
                    seg, (np.arange(len(t)) > first_sep).astype(np.int32))
                a, b = t[1:first_sep], t[first_sep + 1:-1]
                same_doc = (b // 1000 == d + 1).all()
                assert same_doc != inst.is_random_next
                if not inst.is_random_next:  # B continues A
                    assert (a // 1000 == d + 1).all()
                labels[short_seq_prob].append(int(inst.is_random_next))
                if not short_seq_prob:
                    lengths.append(len(t))
    # Google's rule: 50% random, plus every one-sentence chunk (rare at full
    # length, common for short targets).
    assert 0.46 < np.mean(labels[0.0]) < 0.56, np.mean(labels[0.0])
    assert np.mean(labels[0.5]) > np.mean(labels[0.0])
    assert np.mean(np.array(lengths) >= 26) > 0.8  # full-length pairs


def test_seq2seq_segment_ids_pairs_and_spans(tmp_path, tokenizer_path):
    rows = [{"src": f"Question number {i} about lists", "tgt": "An answer."}
            for i in range(30)]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = str(tmp_path / "pairs")
    manifests = builder.build(
        str(tmp_path / "p.jsonl"), tokenizer_path, out,
        task=tasks.TaskConfig(task="seq2seq", pairs=True, max_seq_length=24),
        source=sources.SourceConfig(input_format="jsonl", text_field="src",
                                    target_field="tgt"))
    m = manifests["train"]
    assert (m.task, m.masking, m.num_examples) == ("seq2seq", "none", 30)
    ds = input_lib.make_dataset(os.path.join(out, "train"), 5, training=False)
    assert sorted(ds.element_spec) == ["input_ids", "input_mask", "segment_ids"]
    for batch in ds:
        for ids, mask, seg in zip(*(batch[k].numpy() for k in
                                    ("input_ids", "input_mask", "segment_ids"))):
            n = int(mask.sum())
            seps = np.flatnonzero(ids[:n] == features.SEP_ID)
            assert ids[0] == features.CLS_ID and len(seps) == 2
            assert seps[1] == n - 1
            want = np.zeros(24, np.int32)
            want[seps[0] + 1:n] = 1
            np.testing.assert_array_equal(seg, want)
    # Consecutive sentence spans from plain documents.
    docs = [[f"Sentence {k} of document {d}." for k in range(4)]
            for d in range(10)]
    corpus.write_documents(docs, str(tmp_path / "d.txt"))
    spans = builder.build(str(tmp_path / "d.txt"), tokenizer_path,
                          str(tmp_path / "spans"),
                          task=tasks.TaskConfig(task="seq2seq",
                                                max_seq_length=40))
    for ex in input_lib.iterate_numpy(str(tmp_path / "spans" / "train")):
        n = int(ex["input_mask"].sum())
        assert ex["segment_ids"][:n].any() and ex["segment_ids"][1] == 0
    assert spans["train"].num_examples >= 10


def test_lm_packing(tmp_path, tokenizer_path, corpus_file):
    out = str(tmp_path / "lm")
    m = builder.build(corpus_file, tokenizer_path, out, docs_per_unit=50,
                      task=tasks.TaskConfig(task="lm", max_seq_length=64))
    assert m["train"].task == "lm"
    spec = input_lib.make_dataset(os.path.join(out, "train"), 4).element_spec
    assert sorted(spec) == ["input_ids", "input_mask"]
    rows = list(input_lib.iterate_numpy(os.path.join(out, "train")))
    full = sum(int(r["input_mask"].all()) for r in rows)
    assert full >= len(rows) - 8  # only each unit's last chunk is partial


def _shards(directory):
    return {f: open(os.path.join(directory, f), "rb").read()
            for f in sorted(os.listdir(directory)) if ".tfrecord" in f}


def test_workers_give_identical_shards(corpus_file, tokenizer_path, tmp_path):
    task = tasks.TaskConfig(max_seq_length=32, max_predictions_per_seq=5,
                            next_sentence=True, dupe_factor=2)
    for workers in (1, 2):
        builder.build(corpus_file, tokenizer_path, str(tmp_path / str(workers)),
                      task=task, num_workers=workers, docs_per_unit=40,
                      num_shards=3, eval_fraction=0.1, seed=4)
    for split in ("train", "eval"):
        one = _shards(tmp_path / "1" / split)
        assert one and one == _shards(tmp_path / "2" / split)


def test_interrupted_build_leaves_no_manifest(corpus_file, tokenizer_path,
                                              tmp_path, monkeypatch):
    real = sources.read_documents

    def interrupted(inputs, config, progress=None):
        for i, doc in enumerate(real(inputs, config, progress)):
            if i == 120:
                raise KeyboardInterrupt
            yield doc

    monkeypatch.setattr(sources, "read_documents", interrupted)
    out = tmp_path / "out"
    for workers in (1, 2):
        with pytest.raises(KeyboardInterrupt):
            builder.build(corpus_file, tokenizer_path, str(out),
                          docs_per_unit=30, num_workers=workers)
        assert not out.exists()


def test_read_google_layout_records(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(test_google_records.VOCAB) + "\n")
    records_dir = tmp_path / "google"
    records_dir.mkdir()
    # Written the way Google's create_pretraining_data.py writes them.
    test_google_records._write_records(  # pylint: disable=protected-access
        records_dir / "wiki.tfrecord", count=7)
    data_dir = str(tmp_path / "data")
    manifest = google_records.write_manifest(
        str(records_dir / "*.tfrecord"), data_dir, max_seq_length=8,
        max_predictions_per_seq=2, vocab_file=str(vocab))
    assert manifest.num_examples == 7 and manifest.special_ids["mask"] == 5
    batch = next(iter(input_lib.make_dataset(data_dir, 7, training=False)))
    assert batch["next_sentence_labels"].numpy().ravel().tolist() == [
        0, 1, 0, 1, 0, 1, 0]
    assert batch["masked_lm_ids"].dtype == tf.int32
    with pytest.raises(ValueError, match="wiki.tfrecord.*max_seq_length=16"):
        google_records.write_manifest(
            str(records_dir / "*.tfrecord"), str(tmp_path / "x"),
            max_seq_length=16, max_predictions_per_seq=2, vocab_file=str(vocab))


def test_inspect_cli(corpus_file, tokenizer_path, tmp_path):
    builder.build(corpus_file, tokenizer_path, str(tmp_path), docs_per_unit=50,
                  task=tasks.TaskConfig(max_seq_length=32,
                                        max_predictions_per_seq=5,
                                        masking="dynamic"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO)
    result = subprocess.run(
        [sys.executable, "-m", "data_pipeline.inspect",
         str(tmp_path / "train"), "--num_examples=2"], cwd=_REPO, env=env,
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert '"masking": "dynamic"' in result.stdout
    assert "example 1:" in result.stdout and "[CLS]" in result.stdout
    assert "[▁" in result.stdout or "->" in result.stdout  # masked, bracketed
