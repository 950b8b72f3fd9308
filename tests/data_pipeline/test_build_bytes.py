"""The shards a build writes are pinned byte for byte.

Each case builds a small train + eval split from data written here (a
WordPiece `vocab.txt` and a seeded text corpus, so no trained model is
involved) and compares the sha256 of every shard, and the manifest less its
paths and version, with the values commit 1b6cead's builder produced for the
same flags. A change to packing, masking, serialisation or shuffling that
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

from data_pipeline import builder
from data_pipeline import corpus
from data_pipeline import sources
from data_pipeline import tasks

_SPECIAL = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]",
            "[MASK]"]
_WORDS = ("the a value list object name attribute returns when is of an "
          "file line text data model token word piece").split()
_PIECES = ["un", "##break", "##able", "re", "##turn", "##ed", "##s"]
_BUILD = dict(seed=7, num_shards=3, eval_fraction=0.2, docs_per_unit=16,
              shuffle_buffer=40)
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

# From commit 1b6cead's builder (`python -m tests.data_pipeline.
# test_build_bytes` run there): per case and split, the records per shard,
# each shard's sha256 and the sha256 of the manifest less `_UNPINNED`.
EXPECTED = {
    "lm": {
        "train": {
            "examples_per_shard": [33, 33, 33],
            "shard_sha256": [
                "a0fa948dfe0f5e11def1f8b053e70a17c24f96d88a6d1d732795863ff9d1acac",
                "8796f2be64687e101b89cd2c3d489c014710cfa2295eb57757fff91b4b3b639c",
                "3577d9c9883a8de89c7c5fd28c6615666dcdb64cf7f6261b573b09105ff98a3a",
            ],
            "manifest_sha256":
                "10c56e2d83d022251111e198b2d53736772af2b69afc67da2dc9ad7898649035",
        },
        "eval": {
            "examples_per_shard": [35],
            "shard_sha256": [
                "3d20d676b3b5138f2a17dbb838013def0c2db56ee6b630f9d5ef9f5d5560d755",
            ],
            "manifest_sha256":
                "2788190919e14135c71d788b050c9e2993f2878c0c14cb11bf80155fcd8490d1",
        },
    },
    "mlm_dynamic": {
        "train": {
            "examples_per_shard": [97, 96, 96],
            "shard_sha256": [
                "ea486541be2c108f59f8203b88fb214addcfc0d1208266b3a8e819b85795425b",
                "9da93e6428678a621f94762a2fa7fce0724bebc5ece6f4e2b68899d4458840b3",
                "02c230ab37890561ff1d361135901bdd4047c1e8b3901d3781e3cb29ca8129ec",
            ],
            "manifest_sha256":
                "8e2e1cfe86fe6e12b248119f94d1e7de36846295899c00be97cdbc12a702fb38",
        },
        "eval": {
            "examples_per_shard": [44],
            "shard_sha256": [
                "a46e52ba5afe2e1301b1b3f02f39ced2ad5ef4733b512674d1d4e6e7a632e03d",
            ],
            "manifest_sha256":
                "d9494bd8cc741b68b6f33506cf23f452bd6ddc3bd9018e079fcbc3e5dcc3808f",
        },
    },
    "mlm_static": {
        "train": {
            "examples_per_shard": [69, 68, 68],
            "shard_sha256": [
                "8801cd0e5b208ff51e1b3f8a8f2562b180beca6531163c06c2b924c5055017ed",
                "9c1a77b7f526fa5d3b860e7ad699b5a6c9a48e00fa327b9bfcfdee50c751f49f",
                "a919eb852e6f0031fbde5ab030cf5ab21e2f833d67741ff14c84a8abb480915a",
            ],
            "manifest_sha256":
                "f97b5e1d96b9fbea9be3845dde4a6c3fd62a9d22133c646b4c89540543ff131c",
        },
        "eval": {
            "examples_per_shard": [63],
            "shard_sha256": [
                "1eba328ea1ad9835d7125ab99cf71f8947888558353d0a69bba5ba1a57293ec5",
            ],
            "manifest_sha256":
                "d4f2a55983e3896f0614a06d5549263c1a4ef622f1c705935783a5fc32f1ef03",
        },
    },
    "mlm_static_nsp": {
        "train": {
            "examples_per_shard": [108, 108, 108],
            "shard_sha256": [
                "661c7cd419c8c6b3b2cd5b7041e3f13aa0afa55ae238ac113d2e844ce1d60224",
                "b72bfaa6ad833a2592fd63cfce876d3daaee57d7df631fce96fea8d90ee80ea4",
                "523b4df70dea0a4303be4ee17dba8c8bbaf6c6e4d8a69837f45fc47a9b4024f9",
            ],
            "manifest_sha256":
                "f53b14d4ff1dbd41732793d5d456bdecd3cd428c1c4e9cf5ffbd585d6f097028",
        },
        "eval": {
            "examples_per_shard": [54],
            "shard_sha256": [
                "6c24646612131196522bf0c54578e1339396299d040f2a79cbc38e135504adc4",
            ],
            "manifest_sha256":
                "ba844f92b48e51b3857d50e4fd35075f125054022412842a939c4ee451fec390",
        },
    },
    "seq2seq": {
        "train": {
            "examples_per_shard": [37, 37, 36],
            "shard_sha256": [
                "907ddec4c1786a88bee714f482ededf4d2db3d9abfa99af66d0aef3c6b06f99c",
                "3ce70ad1723d6b567463a3fb8c4488940d3cf40ed15803f7e4bfcf93967bafd4",
                "48ae696354c7defe9252923b0cc4df0abce182254c79b20f11122de5b71c3c23",
            ],
            "manifest_sha256":
                "0bbb80b988ad7c4efc54a82d5ed900b231de822e58c58af2b97f5bc18e220dd9",
        },
        "eval": {
            "examples_per_shard": [34],
            "shard_sha256": [
                "de589442635028c257d0c0cac54baff1bfd2cab1c32ef1390581ad96d22ba6e5",
            ],
            "manifest_sha256":
                "e965a7df6d05b96e96c85a6a4e6191ddba62691d02f5c71f0fef38eeed7b17e4",
        },
    },
    "seq2seq_pairs": {
        "train": {
            "examples_per_shard": [19, 19, 19],
            "shard_sha256": [
                "8b3de0e6cd16ea24d416c9a8351b4ab025177d53753a75b348429fd73048ecb2",
                "d15dbd3332d29783c2e4af4abb945efd7147a53e9ebcb0711b22c74071049412",
                "f517eeb948f06721fadba390dc1afb6dbd2b075d3c5f0d0edbfab6f3cd36c5ed",
            ],
            "manifest_sha256":
                "1096a6d88ffb340caa00387fe7e92bc2ad9c6b4d14077b01d0398dbad923b389",
        },
        "eval": {
            "examples_per_shard": [13],
            "shard_sha256": [
                "7ce0e3255a98ded3b6e7131ad00c4b1057cf0469c1b68aeb7b935d39a10ed0b6",
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
    of the manifest less `_UNPINNED`."""
    with open(os.path.join(split_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    shards = []
    for name in manifest["shard_files"]:
        with open(os.path.join(split_dir, name), "rb") as f:
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
