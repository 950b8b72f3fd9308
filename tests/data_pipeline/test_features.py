import json
import os

import pytest
import tensorflow as tf

from data_pipeline import features


def _manifest(**overrides):
    fields = dict(
        max_seq_length=32, max_predictions_per_seq=5, tokenizer_file="spm.model",
        tokenizer_sha256="ab" * 32, vocab_size=500,
        special_ids=dict(features.SPECIAL_IDS), seed=7, split="train",
        num_shards=2, shard_files=["shard-00000-of-00002.tfrecord",
                                   "shard-00001-of-00002.tfrecord"],
        examples_per_shard=[3, 2], num_examples=5, source="test",
        tool_version="0.1.0")
    fields.update(overrides)
    return features.Manifest(**fields)


def test_special_ids():
    assert (features.PAD_ID, features.UNK_ID, features.CLS_ID, features.SEP_ID,
            features.MASK_ID) == (0, 1, 2, 3, 4)
    assert features.NUM_SPECIAL_IDS == len(features.SPECIAL_TOKENS) == 5


def test_feature_spec_google_layout():
    spec = features.mlm_static_feature_spec(128, 20)
    assert sorted(spec) == sorted([
        "input_ids", "input_mask", "segment_ids", "masked_lm_positions",
        "masked_lm_ids", "masked_lm_weights"])
    assert spec["input_ids"].shape == [128]
    assert spec["masked_lm_ids"].shape == [20]
    assert spec["masked_lm_weights"].dtype == tf.float32
    assert spec["segment_ids"].dtype == tf.int64
    with_nsp = features.mlm_static_feature_spec(128, 20, next_sentence=True)
    assert with_nsp["next_sentence_labels"].shape == [1]


def test_manifest_round_trip(tmp_path):
    manifest = _manifest()
    path = manifest.write(str(tmp_path))
    assert os.path.basename(path) == "manifest.json"
    assert features.Manifest.read(str(tmp_path)) == manifest
    assert json.loads(manifest.to_json())["num_examples"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_manifest_missing(tmp_path):
    with pytest.raises(ValueError, match="data_pipeline.build") as e:
        features.Manifest.read(str(tmp_path))
    assert str(tmp_path) in str(e.value)


def test_manifest_unknown_and_missing_keys(tmp_path):
    data = json.loads(_manifest().to_json())
    data["bogus"] = 1
    del data["vocab_size"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ValueError) as e:
        features.Manifest.read(str(tmp_path))
    assert "bogus" in str(e.value) and "vocab_size" in str(e.value)
    assert "manifest.json" in str(e.value)


def test_manifest_invalid_values():
    with pytest.raises(ValueError, match="num_examples=6"):
        _manifest(num_examples=6)
    with pytest.raises(ValueError, match="split"):
        _manifest(split="dev")
    with pytest.raises(ValueError, match="compression"):
        _manifest(compression="ZLIB")
