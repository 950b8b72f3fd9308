"""The shards a build writes are pinned byte for byte.

Each case builds a small train + eval split from data written here (a
WordPiece `vocab.txt` and a seeded text corpus, so no trained model is
involved) and compares the sha256 of every shard, and the manifest less its
paths and version, with the values the builder of the commit that moved
shard assignment and in-shard order to `data_pipeline.shuffle` produced for
the same flags (its records are, as a multiset, those of commit 1b6cead's
builder; only their shards and order changed). A change to packing, masking, serialisation or shuffling that
alters one byte fails here; an intended change updates the table and says
why in its commit.

To print the table for the code at hand:
    python -m tests.data_pipeline.test_build_bytes
"""

import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import builder
from data_pipeline import corpus
from data_pipeline import sources
from data_pipeline import tasks

_SPECIAL = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]",
            "[MASK]"]
_WORDS = ("the a value list object name attribute returns when is of an "
          "file line text data model token word piece").split()
_PIECES = ["un", "##break", "##able", "re", "##turn", "##ed", "##s"]
_BUILD = dict(seed=7, num_shards=3, eval_fraction=0.2, docs_per_unit=16)
# Manifest fields that name paths or the tool version, not the records.
_UNPINNED = ("tokenizer_file", "source", "tool_version")

CASES = {
    "mlm_static_nsp": dict(task="mlm", masking="static", next_sentence=True,
                           max_seq_length=32, max_predictions_per_seq=5,
                           dupe_factor=2),
    "mlm_static": dict(task="mlm", masking="static", max_seq_length=24,
                       max_predictions_per_seq=4, short_seq_prob=0.3),
    "mlm_dynamic": dict(task="mlm", masking="dynamic", max_seq_length=32,
                        max_predictions_per_seq=5, dupe_factor=2),
    "seq2seq": dict(task="seq2seq", max_seq_length=40),
    "seq2seq_pairs": dict(task="seq2seq", pairs=True, max_seq_length=16,
                          max_predictions_per_seq=4),
    "lm": dict(task="lm", max_seq_length=32),
}

# From the builder with `shuffle` keys (`python -m tests.data_pipeline.
# test_build_bytes`): per case and split, the records per shard, each shard's
# sha256 and the sha256 of the manifest less `_UNPINNED`.
EXPECTED = {
    "lm": {
        "train": {
            "examples_per_shard": [33, 36, 30],
            "shard_sha256": [
                "fa8fb54ad27750485bca27f4e351e8c0a156bf8f0a9735439754ae2018629f49",
                "6fbe16305f61b2bcad30a820d670925bed979270e4a69dee7bc00dcfbb719cd2",
                "5c7228dfd771941ee9dec43fedcdde15ae07512cad7dac5e62c7f78ef1d0e673",
            ],
            "manifest_sha256":
                "b1cb7131c71be6d78e7aba543aa2ba752337615b3e6109e2f0998f6eb2950a3c",
        },
        "eval": {
            "examples_per_shard": [35],
            "shard_sha256": [
                "e825d2db0aefb4fda9d56e552a785620a76767f2d64b46b08e54597d239731f0",
            ],
            "manifest_sha256":
                "2788190919e14135c71d788b050c9e2993f2878c0c14cb11bf80155fcd8490d1",
        },
    },
    "mlm_dynamic": {
        "train": {
            "examples_per_shard": [106, 92, 91],
            "shard_sha256": [
                "211a244fdd3abc5129ca60191aa1b00fa2597646e1b36b265bb21dfd79c0b24f",
                "cc0ec7e5f94e0222c00e389bb49eaa1c2df386cbaa5a79245b2e4b1816cd0cfa",
                "223fd7505bf1d3832db2447c1e892987000f5dd7137d8bd2fdeccb34e590be62",
            ],
            "manifest_sha256":
                "bb902bf44276d9adbe80ff0c5dbac02d921cd5eda194c3ca3591641258a75794",
        },
        "eval": {
            "examples_per_shard": [44],
            "shard_sha256": [
                "9c7b8ffc70d568b309800a80d59a14a4c90126f3b47e6491dea5a634742cff4c",
            ],
            "manifest_sha256":
                "d9494bd8cc741b68b6f33506cf23f452bd6ddc3bd9018e079fcbc3e5dcc3808f",
        },
    },
    "mlm_static": {
        "train": {
            "examples_per_shard": [78, 66, 61],
            "shard_sha256": [
                "9826759662a2cda31dae2a6e35ffb186097ed0bf9596360f6a959524c0cd128b",
                "e609912c1b9867fc0b732b9fd956f1f4adbd5bbe7487e9fd92917feba89705fe",
                "721959fc06325a306dd8c8e636b21d81ff0742e8cd6d5479dc173cd28bbbf56b",
            ],
            "manifest_sha256":
                "b9f76d16fbbc20362bc80c2f278babcbdfb40d076d4b7ad4a16b0e4d26eecc68",
        },
        "eval": {
            "examples_per_shard": [63],
            "shard_sha256": [
                "0bee6726b9d437154f4f01a6d376ddbd4b58c1998f6d697eb3c7b223540793d2",
            ],
            "manifest_sha256":
                "d4f2a55983e3896f0614a06d5549263c1a4ef622f1c705935783a5fc32f1ef03",
        },
    },
    "mlm_static_nsp": {
        "train": {
            "examples_per_shard": [117, 105, 102],
            "shard_sha256": [
                "472c8ec9647c29822fb2167c4367427cc4c49c14c226219182d9952bd06fa8c5",
                "dea8f26d9396c617185d87fcd793765ec41b56454f82128e6adf6cdc20ffe477",
                "2cc6a8bd74b04bc0649ed5e4e694afcb2270aa23f50d3a080572ff03c29c2952",
            ],
            "manifest_sha256":
                "885965000125a2116414fbe42334b508505e0cf0625219b1b72ce1cb3749b1e7",
        },
        "eval": {
            "examples_per_shard": [54],
            "shard_sha256": [
                "52c79baa23e1adcd3722eae7e3a9bd275b375ac76f6d907cf42c335557f58319",
            ],
            "manifest_sha256":
                "ba844f92b48e51b3857d50e4fd35075f125054022412842a939c4ee451fec390",
        },
    },
    "seq2seq": {
        "train": {
            "examples_per_shard": [40, 37, 33],
            "shard_sha256": [
                "c590038d3159c5b8787378bcc554425fda7b89532c17122dd2950a0480747bae",
                "b719656cfaac29479d3fb6a2f981ac4613f3dc506d7041626103a8f0c6963e65",
                "8922fc38cfa5d4165269a8e93c628bd6d219e171f98df5ece4b50cc13ab29b85",
            ],
            "manifest_sha256":
                "f7cb97dc19dac7629c84f4d8bf2de7529d61d5a410dc97023b55c48eb6f436c3",
        },
        "eval": {
            "examples_per_shard": [34],
            "shard_sha256": [
                "462c055282ec9f9db025bbe15deaa2d73be5b9644708fa59a381448061e6a37a",
            ],
            "manifest_sha256":
                "e965a7df6d05b96e96c85a6a4e6191ddba62691d02f5c71f0fef38eeed7b17e4",
        },
    },
    "seq2seq_pairs": {
        "train": {
            "examples_per_shard": [19, 24, 14],
            "shard_sha256": [
                "888ac4570286a03cb44234643e6b2756143f54dde62e44490440a531522c8a54",
                "755b62603f60c7aeacf1f4d607c9b19a58557e25c2fc8785b79e17f167cf13c2",
                "dbedda2a147d9c493b652eb84fb52d23704e9232f6433d5f170b4dc1001ad51c",
            ],
            "manifest_sha256":
                "e4f708cb84cb3394c73a2e0c6695913a02c62706329af0133693e17db765c66c",
        },
        "eval": {
            "examples_per_shard": [13],
            "shard_sha256": [
                "e9a108d4db967faa1eb427eaf13295b631edb153716493c20838a2fd80aa38af",
            ],
            "manifest_sha256":
                "76dac6af8395f742b6844af8e93ef53f8033aa896978e527f5eeac59e22f6f90",
        },
    },
}


def write_inputs(directory: str) -> dict:
    """The vocabulary, a text corpus and a JSONL file of (source, target)
    pairs, all from fixed seeds."""
    rng = np.random.default_rng(0)
    vocab = os.path.join(directory, "vocab.txt")
    with open(vocab, "w", encoding="utf-8") as f:
        f.write("\n".join(_SPECIAL + _WORDS + _PIECES + list(".,")) + "\n")
    # Words outside the vocabulary become [UNK]; "unbreakable", "returned"
    # and "unreturns" are several pieces (whole-word groups).
    words = _WORDS + ["unbreakable", "returned", "unreturns", "zebra"]

    def sentence(low, high):
        return " ".join(rng.choice(words, int(rng.integers(low, high)))) + "."

    docs = [[sentence(2, 14) for _ in range(int(rng.integers(1, 9)))]
            for _ in range(90)]
    text = os.path.join(directory, "corpus.txt")
    corpus.write_documents(docs, text)
    pairs = os.path.join(directory, "pairs.jsonl")
    with open(pairs, "w", encoding="utf-8") as f:
        for _ in range(70):
            f.write(json.dumps({"text": sentence(1, 12),
                                "target": sentence(1, 9)}) + "\n")
    return {"vocab": vocab, "text": text, "pairs": pairs}


def digest(split_dir: str) -> dict:
    """Records per shard, sha256 of each shard (in `shard_files` order) and
    of the manifest less `_UNPINNED` (`split_dir` local or a URL)."""
    with tf.io.gfile.GFile(os.path.join(split_dir, "manifest.json")) as f:
        manifest = json.load(f)
    shards = []
    for name in manifest["shard_files"]:
        with tf.io.gfile.GFile(os.path.join(split_dir, name), "rb") as f:
            shards.append(hashlib.sha256(f.read()).hexdigest())
    pinned = {k: v for k, v in manifest.items() if k not in _UNPINNED}
    return {"examples_per_shard": manifest["examples_per_shard"],
            "shard_sha256": shards,
            "manifest_sha256": hashlib.sha256(json.dumps(
                pinned, sort_keys=True).encode()).hexdigest()}


def build_case(name: str, inputs: dict, output_dir: str) -> dict:
    """Builds one case; returns {split: digest}."""
    flags = CASES[name]
    source = sources.SourceConfig()
    path = inputs["text"]
    if flags.get("pairs"):
        source = sources.SourceConfig(input_format="jsonl",
                                      target_field="target")
        path = inputs["pairs"]
    builder.build(path, inputs["vocab"], output_dir,
                  task=tasks.TaskConfig(**flags), source=source, **_BUILD)
    return {split: digest(os.path.join(output_dir, split))
            for split in ("train", "eval")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_inputs(str(tmp_path_factory.mktemp("bytes_inputs")))


@pytest.mark.parametrize("name", sorted(CASES))
def test_shards_byte_identical_to_reference(name, inputs, tmp_path):
    got = build_case(name, inputs, str(tmp_path / name))
    assert all(sum(d["examples_per_shard"]) > 0 for d in got.values())
    assert got == EXPECTED[name]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        files = write_inputs(tmp)
        table = {name: build_case(name, files, os.path.join(tmp, name))
                 for name in sorted(CASES)}
    json.dump(table, sys.stdout, indent=4, sort_keys=True)
    sys.stdout.write("\n")
