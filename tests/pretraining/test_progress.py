"""Feedback during long work: the first (compiling) call and the first step
logged, evaluation progress, and what TensorBoard gets (distinct train/eval
tags readable by `EventAccumulator.Scalars`, an eval point at step 0, none
twice when a finished run is re-run, the resolved experiment)."""

import logging
import math
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_pipeline import input as data_input
from pretraining import progress
from pretraining.trainer import Trainer
from tests.conftest import tiny_experiment


def _scalars(run_dir, split):
    accumulator = EventAccumulator(os.path.join(run_dir, split))
    accumulator.Reload()
    return accumulator, {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
                         for tag in accumulator.Tags()["scalars"]}


def test_chunk_runs_one_step_first_then_stops_at_every_boundary():
    train = types.SimpleNamespace(steps_per_loop=5, checkpoint_every=10, log_every=0,
                                  eval_every=4)
    assert progress.chunk(0, 20, train, first=True) == 1
    assert progress.chunk(0, 20, train, first=False) == 4  # the eval at 4
    assert progress.chunk(4, 20, train, first=False) == 1  # the loop boundary at 5
    assert progress.chunk(13, 20, train, first=True) == 1
    assert progress.chunk(17, 18, train, first=False) == 1  # the end


def test_window_of_compiling_steps_has_no_speed_and_restarts_the_clock(monkeypatch):
    clock = iter([0.0, 100.0, 102.0])  # start, after the compiling call, at the record
    monkeypatch.setattr(progress.time, "time", lambda: next(clock))
    window = progress.Window()
    window.add({"loss_sum": 6.0, "correct": 1.0, "weight": 2.0, "grad_norm": 1.0}, 1,
               timed=False)
    first = window.record(1, 0.1, task="mlm", global_batch_size=8, seq_length=4,
                          flops_per_step=1e6)
    assert "examples_per_second" not in first and first["loss"] == 3.0
    window.add({"loss_sum": 6.0, "correct": 1.0, "weight": 2.0, "grad_norm": 1.0}, 4)
    record = window.record(5, 0.1, task="mlm", global_batch_size=8, seq_length=4,
                           flops_per_step=1e6)
    # 4 timed steps in the 2 s after the compiling call (not 5 steps in 102 s).
    assert record["examples_per_second"] == pytest.approx(4 / 2 * 8)
    assert record["loss"] == pytest.approx(12.0 / 4.0)


def test_log_first_call_logs_compiling_and_its_time_once(caplog):
    caplog.set_level(logging.INFO, logger="absl")
    calls = []
    wrapped = progress.log_first_call(lambda x: calls.append(x) or x * 2, "train step")
    assert wrapped(2) == 4 and wrapped(3) == 6 and calls == [2, 3]
    assert caplog.text.count("Compiling the train step (first call)") == 1
    assert caplog.text.count("Compiled the train step: the first call took") == 1
    traced = tf.function(lambda x: x + 1)
    wrapped = progress.log_first_call(traced, "eval step")
    wrapped(tf.constant(1))
    wrapped(tf.constant(2))
    assert wrapped.experimental_get_tracing_count() == 1  # the tf.function's own attributes


def test_eval_progress_logs_tenths_with_eta(caplog):
    caplog.set_level(logging.INFO, logger="absl")
    tracker = progress.EvalProgress(25, every_seconds=1e9)
    for done in range(1, 26):
        tracker.update(done)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Eval: ")]
    assert [line.split()[1] for line in lines] == [
        f"{d}/25" for d in (3, 6, 9, 12, 15, 18, 21, 24, 25)]
    assert all("ETA " in line for line in lines)


def test_eval_batches_counts_the_batches_an_evaluation_reads(mlm_data):
    read = sum(1 for _ in data_input.make_dataset(mlm_data["eval_dir"], 8, training=False))
    assert progress.eval_batches(mlm_data["eval_dir"], 8) == read
    assert progress.eval_batches(mlm_data["eval_dir"], 8, limit=3) == 3


def test_run_feedback_and_tensorboard(mlm_data, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="absl")
    run = str(tmp_path / "run")
    experiment = tiny_experiment(mlm_data, steps=10, steps_per_loop=5, eval_every=5,
                                 eval_steps=3, checkpoint_every=10, histogram_every=5)
    trainer = Trainer(experiment, run)
    try:
        trainer.train()
    finally:
        trainer.close()
    text = caplog.text
    assert "Compiling the train step (first call)" in text
    assert "Compiled the train step: the first call took" in text
    assert "step 1/10" in text  # the first step, not only multiples of log_every
    assert text.count("Eval: 3/3 batches (100%)") == 3  # steps 0, 5, 10
    records = trainer.log.records()
    assert [r["step"] for r in records] == [1, 5, 10]
    assert "examples_per_second" not in records[0]  # (its time is mostly compiling)
    assert "examples_per_second" in records[1]

    # A finished run re-run: its final evaluation is not written a second time.
    again = Trainer(experiment, run)
    try:
        again.train()
    finally:
        again.close()
    assert [r["step"] for r in again.log.eval_records()] == [0, 5, 10]

    train_acc, train = _scalars(run, "train")
    _, evals = _scalars(run, "eval")
    assert "loss" not in train and "loss" not in evals  # distinct tags, no overlay
    assert [s for s, _ in train["train/loss"]] == [1, 5, 10]
    np.testing.assert_allclose([v for _, v in train["train/loss"]],
                               [r["loss"] for r in records], rtol=1e-6)
    assert [s for s, _ in evals["eval/loss"]] == [0, 5, 10]
    assert "train/masked_lm_accuracy" in train and "eval/masked_lm_accuracy" in evals
    assert "experiment" in train_acc.Tags()["tensors"]  # the resolved experiment as text
    text_event = train_acc.Tensors("experiment")[0]
    assert b'"global_batch_size": 8' in tf.make_ndarray(text_event.tensor_proto).item()
    eval_acc = EventAccumulator(os.path.join(run, "eval"))
    eval_acc.Reload()
    samples = eval_acc.Tensors("eval/samples")  # decoded predictions at each evaluation
    assert [e.step for e in samples] == [0, 5, 10]  # (none again on the re-run)
    sample = tf.make_ndarray(samples[-1].tensor_proto).item().decode()
    assert sample.count("[CLS]") == 3 and "masked positions" in sample
    assert sample.count("[") > 6  # masked positions besides [CLS] and [SEP]
    histograms = train_acc.Tags()["tensors"]
    assert [e.step for e in train_acc.Tensors("weights/bert/layer_0/output/kernel")] == [1, 5, 10]
    assert [e.step for e in train_acc.Tensors("update_ratio/bert/layer_1")] == [5, 10]
    assert "update_ratio/bert/embeddings" in histograms and "update_ratio/mlm" in histograms
    plugins = set()
    for name in os.listdir(os.path.join(run, "train")):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(run, "train", name)):
            plugins.update(v.metadata.plugin_data.plugin_name for v in event.summary.value)
    assert "hparams" in plugins


# make test-all (four short runs); resume equality in test_trainer.py covers the same loop.
@pytest.mark.extended
def test_eval_at_step_zero_and_first_step_change_no_number(mlm_data, tmp_path):
    """The step-0 evaluation and the one-step first call leave the weights
    bit-identical to a run without evaluations."""
    weights = []
    for eval_every in (0, 3):
        experiment = tiny_experiment(mlm_data, steps=6, steps_per_loop=3,
                                     eval_every=eval_every, eval_steps=2, checkpoint_every=6)
        trainer = Trainer(experiment, str(tmp_path / f"e{eval_every}"))
        try:
            trainer.train()
        finally:
            trainer.close()
        weights.append([v.numpy() for v in trainer.state.model.weights])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    assert math.isfinite(float(weights[0][0].sum()))


@pytest.mark.parametrize("name", ["demo", "smoke_cpu", "sample_lm", "sample_seq2seq"])
def test_sample_configs_evaluate_several_times(name):
    from pretraining.config import ExperimentConfig

    experiment = ExperimentConfig.from_json(name)
    train = experiment.train
    assert experiment.data.eval_dir and train.eval_every > 0
    assert train.steps // train.eval_every >= 2, (train.steps, train.eval_every)


def test_eval_samples_put_greedy_predictions_where_the_model_predicts():
    """lm: position i shows the prediction made at i - 1; mlm: the masked
    positions show the top prediction (an independent NumPy argmax)."""
    from pretraining import eval_samples

    vocab = 7
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 5, vocab)).astype("float32")
    batch = {"input_ids": np.array([[1, 2, 3, 4, 0]]), "input_mask": np.array([[1, 1, 1, 1, 0]])}
    (lm,) = eval_samples.predicted_examples(lambda b, training: {"lm_logits": logits}, batch,
                                            "lm")
    expected = logits[0].argmax(-1)
    assert lm["input_ids"].tolist() == [1, *expected[:3].tolist(), 0]
    assert lm["masked_lm_ids"].tolist() == [2, 3, 4]  # the true tokens, for [true->predicted]

    mlm_logits = rng.normal(size=(1, 2, vocab)).astype("float32")
    batch = dict(batch, masked_lm_positions=np.array([[2, 0]]), masked_lm_ids=np.array([[3, 0]]),
                 masked_lm_weights=np.array([[1.0, 0.0]]))
    (mlm,) = eval_samples.predicted_examples(
        lambda b, training: {"masked_lm_logits": mlm_logits}, batch, "mlm")
    assert mlm["input_ids"].tolist() == [1, 2, int(mlm_logits[0, 0].argmax()), 4, 0]


class _Variable:
    def __init__(self, path, value):
        self.path, self.value = path, np.asarray(value, np.float32)

    def numpy(self):
        return self.value


def test_update_ratio_histogram_is_the_relative_change_per_layer(tmp_path):
    from pretraining.metrics_log import MetricsLog

    log = MetricsLog(str(tmp_path))
    before = [_Variable("bert/layer_0/a/kernel", [[3.0, 4.0]]),
              _Variable("bert/layer_0/a/bias", [1.0, 0.0]),
              _Variable("mlm/output_bias", [2.0])]
    after = [_Variable(v.path, v.value * f) for v, f in zip(before, (1.1, 1.0, 0.5))]
    log.histograms(3, before)
    log.histograms(8, after)
    log.close()
    accumulator = EventAccumulator(str(tmp_path / "train"))
    accumulator.Reload()
    layer = [tf.make_ndarray(e.tensor_proto)
             for e in accumulator.Tensors("update_ratio/bert/layer_0")]
    assert len(layer) == 1 and layer[0][:, 2].sum() == 2  # two variables, at step 8 only
    expected = [0.1 / 1.1, 0.0]  # |w - w_before| / |w|, independently: 0.1*5/5.5 and 0
    assert layer[0][:, 0].min() == pytest.approx(min(expected), abs=1e-6)
    assert layer[0][:, 1].max() == pytest.approx(max(expected), abs=1e-6)
    (head,) = [tf.make_ndarray(e.tensor_proto) for e in accumulator.Tensors("update_ratio/mlm")]
    assert head[:, 0].min() == pytest.approx(1.0)  # (2 - 1) / 1
    assert [e.step for e in accumulator.Tensors("weights/mlm/output_bias")] == [3, 8]
