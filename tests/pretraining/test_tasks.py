"""Causal LM and UniLM seq2seq through the same trainer as masked LM."""

import numpy as np
import pytest

from pretraining.config import BertConfig
from pretraining.losses import next_token_weights, task_sums
from pretraining.pretrainer import BertPretrainer
from pretraining.model import BertEncoder
from pretraining.trainer import Trainer
from tests.conftest import tiny_experiment


@pytest.mark.parametrize("task, mask", [("lm", "causal"), ("seq2seq", "unilm")])
def test_task_trains_and_loss_decreases(task_data, tmp_path, task, mask):
    experiment = tiny_experiment(task_data[task], steps=40, steps_per_loop=10,
                                 checkpoint_every=40)
    experiment.task = task
    experiment.model.attention_mask_type = mask
    experiment.__post_init__()
    trainer = Trainer(experiment, str(tmp_path))
    summary = trainer.train()
    records = trainer.log.records()
    assert records[-1]["loss"] < records[0]["loss"] - 0.5, records
    # Without NSP nothing reads the pooler: it is the one variable not trained.
    untrained = ({v.path for v in trainer.state.model.trainable_variables}
                 - {v.path for v in trainer.state.variables})
    assert untrained == {"bert/pooler/kernel", "bert/pooler/bias"}
    assert 0.0 < summary["eval_accuracy"] < 1.0
    assert summary["eval_perplexity"] == pytest.approx(np.exp(summary["eval_loss"]))


def test_task_needs_a_matching_mask(task_data):
    with pytest.raises(ValueError, match=r"task='lm' needs model.attention_mask_type in "
                                         r"\['causal'\]"):
        experiment = tiny_experiment(task_data["lm"])
        experiment.task = "lm"
        experiment.__post_init__()


def test_seq2seq_loss_covers_target_tokens_only():
    batch = {"input_ids": np.array([[2, 7, 8, 3, 9, 10, 3, 0]]),
             "input_mask": np.array([[1, 1, 1, 1, 1, 1, 1, 0]]),
             "segment_ids": np.array([[0, 0, 0, 0, 1, 1, 1, 0]])}
    # Position t predicts token t+1: predictions of 9, 10 and the final [SEP].
    np.testing.assert_array_equal(next_token_weights("seq2seq", batch),
                                  [[0, 0, 0, 1, 1, 1, 0]])
    np.testing.assert_array_equal(next_token_weights("lm", batch), [[1, 1, 1, 1, 1, 1, 0]])
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 8, 12)).astype("float32")
    sums = task_sums("seq2seq", {"lm_logits": logits}, batch)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -sum(log_probs[0, t, batch["input_ids"][0, t + 1]] for t in (3, 4, 5))
    np.testing.assert_allclose(float(sums["loss_sum"]), expected, rtol=1e-5)
    assert float(sums["weight"]) == 3


def test_lm_model_outputs_every_position(repo_root):
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    config.attention_mask_type = "causal"
    model = BertPretrainer(BertEncoder(config), task="lm")
    ids = np.ones((2, 8), "int32")
    logits = model({"input_ids": ids, "input_mask": ids})["lm_logits"]
    assert tuple(logits.shape) == (2, 8, config.vocab_size)


def test_mlm_with_next_sentence_prediction(mlm_data, tmp_path):
    from data_pipeline import builder, tasks

    data_dir = tmp_path / "nsp"
    builder.build([mlm_data["corpus"]], mlm_data["tokenizer"], str(data_dir),
                  task=tasks.TaskConfig(next_sentence=True, max_seq_length=32,
                                        max_predictions_per_seq=5),
                  seed=1, num_shards=2, eval_fraction=0.1)
    data = {"train_dir": str(data_dir / "train"), "eval_dir": str(data_dir / "eval"),
            "vocab_size": mlm_data["vocab_size"]}
    trainer = Trainer(tiny_experiment(data, steps=30, steps_per_loop=10, checkpoint_every=30),
                      str(tmp_path / "run"))
    summary = trainer.train()
    assert trainer.state.model.next_sentence
    paths = {v.path for v in trainer.state.model.weights}
    assert {"nsp/kernel", "nsp/bias"} <= paths
    # With NSP the pooler is trained (it feeds the NSP head).
    trained = {v.path for v in trainer.state.variables}
    assert {"bert/pooler/kernel", "nsp/kernel"} <= trained
    records = trainer.log.records()
    assert all("nsp_accuracy" in r for r in records)
    assert 0.0 <= summary["eval_nsp_accuracy"] <= 1.0
    assert records[-1]["loss"] < records[0]["loss"]


def test_mlm_head_is_tied_to_the_word_embeddings(repo_root):
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    model = BertPretrainer(BertEncoder(config))
    word_embeddings = model.encoder.embeddings.word_embeddings
    assert model.masked_lm.token_embedding is word_embeddings
    # Held, not owned: every weight once, at its one path.
    paths = [v.path for v in model.weights]
    assert len(paths) == len(set(paths))
    assert {v.path for v in model.masked_lm.weights} == {
        "mlm/transform/kernel", "mlm/transform/bias", "mlm/LayerNorm/gamma",
        "mlm/LayerNorm/beta", "mlm/output_bias"}
    # The logits follow the embedding matrix: NumPy reference of the head.
    rng = np.random.default_rng(0)
    word_embeddings.embeddings.assign(rng.normal(size=word_embeddings.embeddings.shape))
    sequence = rng.normal(size=(2, 6, config.hidden_size)).astype("float32")
    positions = np.array([[1, 4], [0, 5]], "int32")
    hidden = model.masked_lm.layer_norm(model.masked_lm.transform(
        np.take_along_axis(sequence, positions[:, :, None], axis=1)))
    expected = (np.asarray(hidden) @ np.asarray(word_embeddings.embeddings).T
                + np.asarray(model.masked_lm.output_bias))
    np.testing.assert_allclose(model.masked_lm(sequence, positions), expected, rtol=1e-5,
                               atol=1e-5)


def test_dtype_reaches_every_layer_without_the_global_policy(repo_root):
    import keras

    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    before = keras.mixed_precision.global_policy().name
    model = BertPretrainer(BertEncoder(config, dtype="mixed_bfloat16"), dtype="mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == before
    encoder = model.encoder
    layer = encoder.layer_0
    for sublayer in (encoder.embeddings.word_embeddings, layer.attention.query,
                     layer.intermediate, encoder.pooler, model.masked_lm.transform):
        assert sublayer.compute_dtype == "bfloat16", sublayer.path
    for sublayer in (layer.output_layer_norm, model.masked_lm.layer_norm):
        assert sublayer.compute_dtype == "float32", sublayer.path
    ids = np.ones((2, 8), "int32")
    outputs = model({"input_ids": ids, "segment_ids": 0 * ids, "input_mask": ids,
                     "masked_lm_positions": np.array([[1, 2], [3, 4]], "int32")})
    assert outputs["masked_lm_logits"].dtype == "float32"
