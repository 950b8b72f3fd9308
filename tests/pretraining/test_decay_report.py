"""The weight-decay report is one compact line: a path repeated over the
layers is named once with its layer range."""

import logging

import keras

from pretraining.config import BertConfig
from pretraining.model import BertEncoder
from pretraining.optimizers import rules


def test_compact_paths_groups_layers():
    paths = [f"bert/layer_{i}/{name}" for i in range(12)
             for name in ("attention/query/kernel", "output/kernel")]
    paths = ["bert/embeddings/word_embeddings/embeddings"] + paths + ["mlm/transform/kernel"]
    assert rules.compact_paths(paths) == (
        "bert/embeddings/word_embeddings/embeddings, "
        "bert/layer_{0-11}/attention/query/kernel, bert/layer_{0-11}/output/kernel, "
        "mlm/transform/kernel")
    assert rules.compact_paths(["a/layer_0/k", "a/layer_2/k", "a/layer_3/b"]) == (
        "a/layer_{0,2}/k, a/layer_3/b")
    assert rules.compact_paths([]) == ""


def test_decay_report_of_a_model_is_compact(caplog):
    from pretraining.optimizers import AdamW

    caplog.set_level(logging.INFO, logger="absl")
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)
    encoder = BertEncoder(config)
    encoder({"input_ids": keras.ops.zeros((1, 4), "int32"),
             "segment_ids": keras.ops.zeros((1, 4), "int32"),
             "input_mask": keras.ops.ones((1, 4), "int32")})
    AdamW(learning_rate=1e-3).build(encoder.trainable_variables)
    lines = [r.getMessage() for r in caplog.records if "weight decay" in r.getMessage()]
    assert len(lines) == 2, lines  # decayed and excluded: once each
    assert "layer_{0-2}/attention/query/kernel" in lines[0]
    assert "layer_0/" not in lines[0] and "layer_1/" not in lines[0]
    # every variable is still counted
    decayed = sum(1 for v in encoder.trainable_variables if len(v.shape) >= 2)
    assert f"on {decayed} variables" in lines[0]
