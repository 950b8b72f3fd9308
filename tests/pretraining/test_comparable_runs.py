"""Comparable runs (issue #27): the exported batches are the trainer's, the
initial weights (`ckpt-0`) do not depend on dropout, mixed precision or XLA,
and every evaluation is in `metrics.jsonl`."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from pretraining import export_batches
from pretraining.model import BertEncoder
from pretraining.pretrainer import BertPretrainer
from pretraining.trainer import Trainer
from tests.conftest import REPO_ROOT, tiny_experiment


def _numpy_mlm_loss(logits, batch):
    """Mean cross-entropy of the masked positions, in float64 NumPy."""
    logits = logits.astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, batch["masked_lm_ids"][..., None], -1)[..., 0]
    weights = batch["masked_lm_weights"].astype(np.float64)
    return -(picked * weights).sum() / weights.sum()


def test_exported_batches_are_the_ones_steps_1_to_n_train_on(mlm_data, tmp_path):
    """Frozen weights (learning-rate multiplier 0), dropout off: the loss the
    trainer logs at step k is the loss of ckpt-0 on its k-th batch; NumPy's
    loss of the k-th exported batch must equal it, and not the others'."""
    n = 4
    experiment = tiny_experiment(mlm_data, steps=n, steps_per_loop=1, log_every=1,
                                 checkpoint_every=n, save_initial_checkpoint=True)
    experiment.model.hidden_dropout_prob = experiment.model.attention_probs_dropout_prob = 0.0
    experiment.optimizer.lr_multipliers = {".": 0.0}
    exported = export_batches.global_batches(experiment, n)
    assert exported["input_ids"].shape == (n, experiment.train.global_batch_size, 32)
    np.testing.assert_array_equal(exported["steps"], np.arange(1, n + 1))
    trainer = Trainer(experiment, str(tmp_path))
    try:
        model = trainer.state.model
        initial = {v.path: v.numpy() for v in model.trainable_variables}
        trainer.train()
        logged = [r["loss"] for r in trainer.log.records()]
        assert [r["step"] for r in trainer.log.records()] == list(range(1, n + 1))
        for variable in model.trainable_variables:  # frozen: still the initial weights
            np.testing.assert_array_equal(variable.numpy(), initial[variable.path])
        ours = []
        for k in range(n):
            batch = {name: values[k] for name, values in exported.items() if name != "steps"}
            logits = model(batch, training=False)["masked_lm_logits"]
            ours.append(_numpy_mlm_loss(np.asarray(logits), batch))
    finally:
        trainer.close()
    np.testing.assert_allclose(ours, logged, rtol=1e-5)
    for k in range(n - 1):  # another step's batch would not match: its loss is
        # off by over 10x the tolerance above (near ln(vocab) at random weights,
        # batches' losses differ by ~1e-3, so a loss-level check is all there is)
        assert abs(ours[k] - logged[k + 1]) > 10 * 1e-5 * abs(logged[k + 1])


def _initial_weights(experiment, model_dir):
    """The trainable weights `ckpt-0` holds, read back into a fresh model,
    and the trainer's own weights at start."""
    trainer = Trainer(experiment, model_dir)
    trainer.close()
    own = {v.path: v.numpy() for v in trainer.state.model.trainable_variables}
    keras.utils.set_random_seed(99)  # the fresh model's weights are other ones
    model = BertPretrainer(BertEncoder(experiment.model), experiment.task,
                           trainer.next_sentence)
    tf.train.Checkpoint(model=model).read(
        os.path.join(model_dir, "checkpoints", "ckpt-0")).expect_partial()
    return {v.path: v.numpy() for v in model.trainable_variables}, own


def test_initial_checkpoint_ignores_dropout_precision_and_xla(mlm_data, tmp_path):
    def experiment(**train):
        return tiny_experiment(mlm_data, save_initial_checkpoint=True, **train)

    base, own = _initial_weights(experiment(), str(tmp_path / "base"))
    assert base.keys() == own.keys()
    for key in base:  # ckpt-0 holds the weights the run starts from
        np.testing.assert_array_equal(base[key], own[key], err_msg=key)
    no_dropout = experiment()
    no_dropout.model.hidden_dropout_prob = no_dropout.model.attention_probs_dropout_prob = 0.0
    variants = {"no dropout": no_dropout, "mixed_float16": experiment(
        mixed_precision="mixed_float16"), "jit_compile": experiment(jit_compile=True)}
    for name, variant in variants.items():
        weights, _ = _initial_weights(variant, str(tmp_path / name.replace(" ", "_")))
        assert weights.keys() == base.keys(), name
        for key in base:
            np.testing.assert_array_equal(weights[key], base[key], err_msg=f"{name}: {key}")
    # Truncated normal(0.02) (Google's): std 0.02 * 0.8796, nothing beyond 2 sigma.
    embeddings = next(v for k, v in base.items() if "word_embeddings" in k)
    assert abs(embeddings.std() - 0.02 * 0.8796) < 0.1 * 0.02 and abs(embeddings).max() <= 0.04
    # And the stream is the seed's: another seed, other weights.
    other, _ = _initial_weights(experiment(seed=4), str(tmp_path / "seed4"))
    assert not np.array_equal(next(v for k, v in other.items() if "word_embeddings" in k),
                              embeddings)


# make test-all; test_exported_batches_are_the_ones_steps_1_to_n_train_on checks the batches
# through the same public function the CLI calls.
@pytest.mark.extended
def test_export_batches_cli(mlm_data, tmp_path):
    experiment = tiny_experiment(mlm_data)
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(experiment.to_dict()))
    out = tmp_path / "batches.npz"
    result = subprocess.run(
        [sys.executable, "-m", "pretraining.export_batches", f"--experiment={path}",
         "--num_batches=3", "--first_step=2", f"--out={out}", "--override=train.seed=5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == [2, 4]
    experiment.train.seed = 5
    expected = export_batches.global_batches(experiment, 3, first_step=2)
    with np.load(out) as written:
        assert sorted(written.files) == sorted(expected)
        for name in expected:
            np.testing.assert_array_equal(written[name], expected[name], err_msg=name)
    bad = subprocess.run(
        [sys.executable, "-m", "pretraining.export_batches", f"--experiment={path}",
         "--num_batches=1", f"--out={tmp_path / 'batches.txt'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "--out must end in .npz" in bad.stderr


def test_every_evaluation_is_in_metrics_jsonl(mlm_data, tmp_path):
    experiment = tiny_experiment(mlm_data, steps=10, eval_every=5, eval_steps=2)
    trainer = Trainer(experiment, str(tmp_path))
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    evals = [r for r in lines if "eval_loss" in r]
    assert [r["step"] for r in evals if r["step"] > 0] == [5, 10]
    assert evals[-1]["eval_loss"] == pytest.approx(summary["eval_loss"])
    assert evals == trainer.log.eval_records()
    assert all("eval_loss" not in r for r in trainer.log.records())


def test_dropout_runs_at_its_effective_rate():
    """The 16-bit masks drop 6554/65536 of the elements for rate 0.1 (0.100006):
    measured on 2**22 elements (std of the fraction 1.5e-4); rates are
    multiples of 1/65536."""
    from pretraining.config import BertConfig
    from pretraining.dropout import Dropout, effective_rate
    from pretraining.model import dropout_rates

    assert effective_rate(0.1) == 6554 / 65536 and effective_rate(0.0) == 0.0
    assert effective_rate(0.5) == 0.5 and effective_rate(1e-6) == 1 / 65536
    assert abs(effective_rate(0.1) - 0.1) < 1 / 131072
    keras.utils.set_random_seed(1)
    dropped = Dropout(0.1)(np.ones((1024, 4096), "float32"), training=True)
    fraction = float(np.mean(np.asarray(dropped) == 0))
    assert abs(fraction - 6554 / 65536) < 6e-4, fraction
    config = BertConfig.from_dict({"vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1,
                                   "num_attention_heads": 1, "intermediate_size": 4})
    assert "hidden_dropout_prob 0.1 runs as 0.100006" in dropout_rates(config)
