"""Causal LM and UniLM seq2seq through the same trainer as masked LM."""

import numpy as np
import pytest

from pretraining.config import BertConfig
from pretraining.heads import BertPretrainer, next_token_weights, task_sums
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
    records = trainer.log.records()
    assert all("nsp_accuracy" in r for r in records)
    assert 0.0 <= summary["eval_nsp_accuracy"] <= 1.0
    assert records[-1]["loss"] < records[0]["loss"]
