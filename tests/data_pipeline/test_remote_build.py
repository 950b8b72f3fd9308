"""`data_pipeline.build --output_dir=gs://…`: the build writes through
`tf.io.gfile`. TensorFlow's in-memory `ram://` file system stands in for
Cloud Storage (same code path: a URL, no atomic directory rename)."""

import os
import uuid

import tensorflow as tf

from data_pipeline import atomic, build, features


def _build(mlm_data, output_dir, overwrite=False):
    return build.build_mlm([mlm_data["corpus"]], mlm_data["tokenizer"], output_dir,
                           max_seq_length=32, max_predictions_per_seq=5, seed=1,
                           num_shards=2, eval_fraction=0.1, overwrite=overwrite)


def _files(directory):
    return {name: tf.io.gfile.GFile(os.path.join(directory, name), "rb").read()
            for name in tf.io.gfile.listdir(directory)}


def test_build_to_url_writes_the_same_bytes_as_a_local_build(mlm_data, tmp_path):
    remote = f"ram://build-{uuid.uuid4().hex}/data"
    local = str(tmp_path / "data")
    remote_manifests = _build(mlm_data, remote)
    _build(mlm_data, local)
    assert sorted(tf.io.gfile.listdir(remote)) == ["eval", "train"]  # no .tmp-* left
    for split in ("train", "eval"):
        remote_files = _files(os.path.join(remote, split))
        local_files = _files(os.path.join(local, split))
        assert sorted(remote_files) == sorted(local_files)
        assert features.MANIFEST_FILE in remote_files
        for name, data in local_files.items():
            assert remote_files[name] == data, name
    assert remote_manifests["train"].num_examples > 0


def test_rebuilding_a_url_replaces_the_split(mlm_data):
    remote = f"ram://rebuild-{uuid.uuid4().hex}/data"
    _build(mlm_data, remote)
    stale = os.path.join(remote, "train", "stale.txt")
    with tf.io.gfile.GFile(stale, "w") as f:
        f.write("left over from an older build")
    _build(mlm_data, remote, overwrite=True)
    assert not tf.io.gfile.exists(stale)
    assert tf.io.gfile.exists(os.path.join(remote, "train", features.MANIFEST_FILE))


def test_atomic_write_text_to_url():
    path = f"ram://atomic-{uuid.uuid4().hex}/x/manifest.json"
    tf.io.gfile.makedirs(os.path.dirname(path))
    atomic.write_text(path, "{}\n")
    assert tf.io.gfile.GFile(path).read() == "{}\n"
    assert atomic.is_remote(path) and not atomic.is_remote("/tmp/x")


def test_input_pipeline_reads_a_url_like_a_local_directory(mlm_data, tmp_path):
    from data_pipeline import input as data_input

    remote = f"ram://read-{uuid.uuid4().hex}/data"
    _build(mlm_data, remote)
    _build(mlm_data, str(tmp_path / "data"))
    for split in ("train", "eval"):
        assert data_input.read_manifest(os.path.join(remote, split)) == \
            data_input.read_manifest(str(tmp_path / "data" / split))
    remote_batches = list(data_input.make_dataset(os.path.join(remote, "eval"), 8,
                                                  training=False).as_numpy_iterator())
    local_batches = list(data_input.make_dataset(str(tmp_path / "data" / "eval"), 8,
                                                 training=False).as_numpy_iterator())
    assert len(remote_batches) == len(local_batches) > 0
    for a, b in zip(remote_batches, local_batches):
        for key in a:
            assert (a[key] == b[key]).all(), key


def test_corpus_and_tokenizer_on_a_url_build_the_local_bytes(tmp_path):
    """--input and --tokenizer on gs:// (ram:// here) read through tf.io.gfile:
    the shards and manifest (less paths) of the same build from local files."""
    from tests.data_pipeline import test_build_bytes

    files = test_build_bytes.write_inputs(str(tmp_path))
    remote = f"ram://inputs-{uuid.uuid4().hex}"
    for name in ("corpus.txt", "vocab.txt"):
        tf.io.gfile.copy(str(tmp_path / name), f"{remote}/{name}")
    digests = []
    for corpus, vocab, out in ((files["text"], files["vocab"], tmp_path / "local"),
                               (f"{remote}/corpus*.txt", f"{remote}/vocab.txt",
                                f"{remote}/out")):
        build.build_mlm(corpus, vocab, str(out), max_seq_length=24,
                        max_predictions_per_seq=4, num_shards=2, eval_fraction=0.2)
        digests.append({split: test_build_bytes.digest(os.path.join(str(out), split))
                        for split in ("train", "eval")})
    assert digests[0] == digests[1]
    assert sum(digests[0]["train"]["examples_per_shard"]) > 0
