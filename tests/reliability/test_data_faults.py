"""Fault injection on the data side: shards and manifests that are not what
they claim, refused with one line naming the file (and the record), exit 2,
and the data directory left as it was.

Each case damages a copy of the session's `mlm_data` train split and runs
`python -m data_pipeline.inspect`'s `run` (in process, through its
`cli.run_or_exit`), the tf.data pipeline, or the trainer's data checks.
"""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import cli, features, integrity, records
from data_pipeline import input as input_lib
from data_pipeline import inspect as inspect_cli
from tests.conftest import tiny_experiment
from tests.data_pipeline import reference


def snapshot(directory):
    """name -> sha256 of every file under `directory` (to prove it unchanged)."""
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def refused(capsys, fn, *args):
    """Runs `fn` through `cli.run_or_exit`; returns stderr's one line (asserting
    exit 2, one line, no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.run_or_exit(fn, *args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def split(mlm_data, tmp_path):
    """A private copy of the train split: (directory, manifest)."""
    directory = str(tmp_path / "train")
    shutil.copytree(mlm_data["train_dir"], directory)
    return directory, features.Manifest.read(directory)


def rewrite_manifest(directory, **changes):
    path = os.path.join(directory, features.MANIFEST_FILE)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data.update(changes)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return path


def shard(directory, manifest, index=0):
    return os.path.join(directory, manifest.shard_files[index])


def record_offsets(path):
    """Byte offset where each record of an uncompressed TFRecord file starts."""
    data = open(path, "rb").read()
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        at += 16 + int.from_bytes(data[at:at + 8], "little")
    return offsets, data


def inspect_refuses(capsys, directory, verify=True):
    before = snapshot(directory)
    line = refused(capsys, inspect_cli.run, directory, 1, 0, verify)
    assert snapshot(directory) == before
    return line


# ------------------------------------------------------------ counts and sizes
def test_empty_shard_refused_at_start_and_by_inspect(split, capsys):
    directory, manifest = split
    path = shard(directory, manifest)
    open(path, "wb").close()
    line = inspect_refuses(capsys, directory, verify=False)
    assert path in line and "0 bytes" in line and str(manifest.examples_per_shard[0]) in line
    with pytest.raises(ValueError, match="0 bytes"):
        input_lib.make_dataset(directory, 4, training=True)


def test_missing_shard_refused(split, capsys):
    directory, manifest = split
    path = shard(directory, manifest, 1)
    os.remove(path)
    assert path in inspect_refuses(capsys, directory, verify=False)


def test_short_shard_by_size_at_start(split, capsys):
    directory, manifest = split
    path = shard(directory, manifest)
    offsets, data = record_offsets(path)
    with open(path, "wb") as f:
        f.write(data[:offsets[2]])  # two whole records of many
    line = inspect_refuses(capsys, directory, verify=False)
    assert path in line and "too short" in line


def test_shard_with_fewer_records_found_when_its_epoch_ends(split, capsys):
    """Cut by a few whole records: too many bytes for the size check, so the
    pipeline's per-file count fails in the first epoch, and the scan names
    the shard; `inspect --verify` refuses it too."""
    directory, manifest = split
    path = shard(directory, manifest)
    offsets, data = record_offsets(path)
    with open(path, "wb") as f:
        f.write(data[:offsets[-3]])
    integrity.check_shards(directory)  # passes: not detectable by size
    for training in (True, False):
        dataset = input_lib.make_dataset(directory, 4, training=training, shuffle_buffer=16)
        batches = manifest.num_examples // 4 + 2
        with pytest.raises(tf.errors.FailedPreconditionError) as error:
            for _ in zip(range(batches), dataset):
                pass
        message = input_lib.explain_error(directory, error.value)
        assert path in message and f"holds {manifest.examples_per_shard[0] - 3} records" in message
    line = inspect_refuses(capsys, directory)
    assert path in line and f"says {manifest.examples_per_shard[0]}" in line


def test_intact_split_verifies(split, capsys):
    directory, manifest = split
    report = cli.run_or_exit(inspect_cli.run, directory, 1, 0, True)
    assert f"verified: {manifest.num_examples} records in {manifest.num_shards}" in report
    assert input_lib.find_bad_record(directory) is None


# ----------------------------------------------------- unreadable shard bytes
def test_flipped_byte_names_shard_and_record(split, capsys):
    directory, manifest = split
    path = shard(directory, manifest, 1)
    offsets, data = record_offsets(path)
    damaged = bytearray(data)
    damaged[offsets[5] + 30] ^= 0xFF  # inside record 5's payload: its CRC fails
    open(path, "wb").write(bytes(damaged))
    line = inspect_refuses(capsys, directory)
    assert f"{path}, record 5:" in line and "corrupted record" in line
    problem = input_lib.find_bad_record(directory)
    assert (problem.path, problem.record_index) == (path, 5)


def test_truncated_mid_record_names_record(split, capsys):
    directory, manifest = split
    path = shard(directory, manifest)
    offsets, data = record_offsets(path)
    with open(path, "wb") as f:
        f.write(data[:offsets[-1] + 20])  # the last record cut after 4 payload bytes
    line = inspect_refuses(capsys, directory)
    assert f"{path}, record {len(offsets) - 1}:" in line and "truncated" in line


def test_not_a_tfrecord_file(split, capsys):
    directory, manifest = split
    path = shard(directory, manifest)
    size = os.path.getsize(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(("plain text, not records\n" * (size // 24 + 1))[:size])
    line = inspect_refuses(capsys, directory, verify=False)  # the first examples fail
    assert f"{path}, record 0:" in line and "TFRecord" in line


def test_wrong_compression_in_manifest(split, capsys):
    directory, _ = split
    rewrite_manifest(directory, compression="GZIP")
    line = inspect_refuses(capsys, directory, verify=False)
    assert "record 0:" in line and "compression='GZIP'" in line and directory in line


# ------------------------------------------------------- records off the layout
def _write_shard(path, rows, lengths):
    batch = records.serialize_batch(reference.pad_rows(rows, lengths), lengths)
    with tf.io.TFRecordWriter(path) as writer:
        for record in batch:
            writer.write(record)


def _good_rows(manifest, n):
    lengths = features.feature_lengths(manifest.task, manifest.masking,
                                       manifest.max_seq_length,
                                       manifest.max_predictions_per_seq,
                                       manifest.next_sentence)
    # Ids of 300 take two bytes: the shard stays above the size check's minimum.
    rows = [{name: np.full(length, 300, np.float32 if kind == "float" else np.int64)
             for name, (length, kind) in lengths.items()} for _ in range(n)]
    return rows, lengths


@pytest.mark.parametrize("fault", ["missing_feature", "renamed_feature", "wrong_dtype",
                                   "wrong_length"])
def test_record_off_layout_names_record(split, capsys, fault):
    directory, manifest = split
    path = shard(directory, manifest)
    count = manifest.examples_per_shard[0]
    rows, lengths = _good_rows(manifest, count)
    bad_rows, bad_lengths = _good_rows(manifest, 1)
    bad, bad_lengths = bad_rows[0], dict(bad_lengths)
    if fault == "missing_feature":
        del bad["segment_ids"], bad_lengths["segment_ids"]
    elif fault == "renamed_feature":
        bad["token_ids"] = bad.pop("input_ids")
        bad_lengths["token_ids"] = bad_lengths.pop("input_ids")
    elif fault == "wrong_dtype":
        bad_lengths["input_mask"] = (manifest.max_seq_length, "float")
        bad["input_mask"] = bad["input_mask"].astype(np.float32)
    else:
        bad_lengths["input_ids"] = (manifest.max_seq_length // 2, "int")
        bad["input_ids"] = bad["input_ids"][:manifest.max_seq_length // 2]
    _write_shard(path, rows, lengths)
    good = open(path, "rb").read()
    _write_shard(path + ".bad", [bad], bad_lengths)
    bad_record = open(path + ".bad", "rb").read()
    os.remove(path + ".bad")
    offsets, _ = record_offsets(path)
    with open(path, "wb") as f:  # record 3 replaced by the bad one
        f.write(good[:offsets[3]] + bad_record + good[offsets[4]:])
    line = inspect_refuses(capsys, directory)
    assert f"{path}, record 3:" in line and "does not match the manifest's layout" in line
    key = {"missing_feature": "segment_ids", "renamed_feature": "input_ids",
           "wrong_dtype": "input_mask", "wrong_length": "input_ids"}[fault]
    assert key in line


# ------------------------------------------------------------------ manifests
@pytest.mark.parametrize("field,value", [("max_seq_length", "64"),
                                         ("num_examples", 12.5),
                                         ("examples_per_shard", ["3", "4"]),
                                         ("next_sentence", "no"),
                                         ("masked_lm_prob", float("nan"))])
def test_manifest_field_types(split, capsys, field, value):
    directory, _ = split
    path = rewrite_manifest(directory, **{field: value})
    line = inspect_refuses(capsys, directory, verify=False)
    assert path in line and field in line and "must" in line and "Traceback" not in line


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/shard.tfrecord",
                                  ".."])
def test_shard_path_escaping_the_split_refused(split, capsys, name):
    directory, manifest = split
    files = list(manifest.shard_files)
    files[1] = name
    path = rewrite_manifest(directory, shard_files=files)
    line = inspect_refuses(capsys, directory, verify=False)
    assert path in line and "shard_files[1]" in line and repr(name) in line
    with pytest.raises(ValueError, match="inside the split directory"):
        input_lib.make_dataset(directory, 4)


def test_train_and_eval_from_different_tokenizers_refused(mlm_data, tmp_path, capsys):
    from pretraining import cli as pretraining_cli
    from pretraining.trainer import Trainer
    eval_dir = str(tmp_path / "eval")
    shutil.copytree(mlm_data["eval_dir"], eval_dir)
    other = "0" * 64
    rewrite_manifest(eval_dir, tokenizer_sha256=other)
    experiment = tiny_experiment(mlm_data)
    experiment.data.eval_dir = eval_dir
    model_dir = str(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        pretraining_cli.run_or_exit(Trainer, experiment, model_dir)
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip()
    train_sha = features.Manifest.read(mlm_data["train_dir"]).tokenizer_sha256
    assert "\n" not in line and other in line and train_sha in line and eval_dir in line
    assert not os.path.exists(model_dir)  # refused before the run directory is made


def test_resume_on_records_from_another_tokenizer_refused(mlm_data, tmp_path, capsys):
    from pretraining import cli as pretraining_cli
    from pretraining.trainer import Trainer
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    saved = json.loads(features.Manifest.read(mlm_data["train_dir"]).to_json())
    saved["tokenizer_sha256"] = "f" * 64
    (model_dir / "data_manifest.json").write_text(json.dumps(saved))
    before = snapshot(str(model_dir))
    experiment = tiny_experiment(mlm_data)
    with pytest.raises(SystemExit) as exit_info:
        pretraining_cli.run_or_exit(Trainer, experiment, str(model_dir))
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "f" * 64 in line and "data_manifest.json" in line
    assert features.Manifest.read(mlm_data["train_dir"]).tokenizer_sha256 in line
    assert snapshot(str(model_dir)) == before

# The real `python -m data_pipeline.inspect` process (exit 2, one `error:` line)
# runs beside `build` and `generate` in test_cli_errors.test_cli_processes_exit_2_with_one_line.
