"""Records made by Google's create_pretraining_data.py: the manifest records
the settings it is told, the vocabulary is checked against the ids, and the
CLI takes Google's flag names."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from data_pipeline import google_records

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]


def _int(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _write_records(path, largest_id=8, count=5):
    """Records laid out as Google's tool writes them (L=8, P=2, NSP labels)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            feature = {
                "input_ids": _int([3, 6, 5, 4, 7, largest_id if i == count - 1 else 8, 4, 0]),
                "input_mask": _int([1] * 7 + [0]),
                "segment_ids": _int([0, 0, 0, 0, 1, 1, 1, 0]),
                "masked_lm_positions": _int([2, 0]),
                "masked_lm_ids": _int([7, 0]),
                "masked_lm_weights": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[1.0, 0.0])),
                "next_sentence_labels": _int([i % 2]),
            }
            writer.write(tf.train.Example(features=tf.train.Features(
                feature=feature)).SerializeToString())


@pytest.fixture
def files(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    (tmp_path / "google").mkdir()
    _write_records(tmp_path / "google" / "wiki.tfrecord")
    return {"vocab": str(vocab), "records": str(tmp_path / "google" / "*.tfrecord")}


def test_settings_are_recorded_as_given(files, tmp_path):
    manifest = google_records.write_manifest(
        files["records"], str(tmp_path / "d"), max_seq_length=8,
        max_predictions_per_seq=2, vocab_file=files["vocab"],
        whole_word_masking=True, dupe_factor=5, seed=7, masked_lm_prob=0.2)
    assert (manifest.whole_word_masking, manifest.dupe_factor, manifest.seed,
            manifest.masked_lm_prob) == (True, 5, 7, 0.2)
    default = google_records.write_manifest(
        files["records"], str(tmp_path / "e"), max_seq_length=8,
        max_predictions_per_seq=2, vocab_file=files["vocab"])
    # Google's defaults: no whole-word masking, dupe_factor 10, random_seed 12345.
    assert (default.whole_word_masking, default.dupe_factor, default.seed) == (
        False, 10, 12345)


def test_too_small_vocabulary_is_refused(files, tmp_path):
    _write_records(tmp_path / "google" / "wiki.tfrecord", largest_id=1051)
    with pytest.raises(ValueError, match=r"wiki.tfrecord' holds token id 1051, beyond "
                       r"--vocab_file=.*vocab.txt' \(9 tokens, ids 0-8\): pass the "
                       r"vocab.txt the records were made with"):
        google_records.write_manifest(
            files["records"], str(tmp_path / "d"), max_seq_length=8,
            max_predictions_per_seq=2, vocab_file=files["vocab"])
    assert not (tmp_path / "d").exists()


def test_cli_takes_google_flag_names(files, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO)
    result = subprocess.run(
        [sys.executable, "-m", "data_pipeline.google_records",
         f"--input_file={files['records']}", f"--vocab_file={files['vocab']}",
         f"--output_dir={tmp_path / 'd'}", "--max_seq_length=8",
         "--max_predictions_per_seq=2", "--do_whole_word_mask", "--random_seed=3",
         "--dupe_factor=2"], cwd=_REPO, env=env, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert (manifest["whole_word_masking"], manifest["seed"], manifest["dupe_factor"]) == (
        True, 3, 2)


def _build(tmp_path, *flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO)
    return subprocess.run([sys.executable, "-m", "data_pipeline.build", *flags], cwd=_REPO,
                          env=env, capture_output=True, text=True, timeout=180)


def test_build_takes_or_refuses_google_flag_names(files, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b c a.\nb c a b.\n\nc a b c.\na a b.\n" * 4)
    result = _build(tmp_path, f"--input_file={corpus}", f"--vocab_file={files['vocab']}",
                    "--random_seed=9", "--nodo_whole_word_mask", "--max_seq_length=16",
                    "--max_predictions_per_seq=2", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "train" / "manifest.json").read_text())
    assert manifest["seed"] == 9 and manifest["tokenizer_file"] == files["vocab"]
    assert manifest["tokenizer_options"]["do_lower_case"] is True  # no upper-case piece
    assert manifest["whole_word_masking"] is False  # Google's flag is our option's alias
    for flag, message in (
            ("--output_file=x.tfrecord", "error: --output_file='x.tfrecord' is Google's "
             "flag: use --output_dir instead"),):
        result = _build(tmp_path, f"--input={corpus}", f"--tokenizer={files['vocab']}",
                        f"--output_dir={tmp_path / 'o'}", flag)
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith(message), result.stderr[-2000:]
        assert "Traceback" not in result.stderr


def test_records_without_manifest_name_google_records(files, tmp_path):
    from data_pipeline import features
    with pytest.raises(ValueError, match=r"No manifest.json .*python -m "
                       r"data_pipeline.google_records --input="):
        features.Manifest.read(str(tmp_path / "google"))
