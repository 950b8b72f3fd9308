"""Fine-tuning on the pretraining trainer's topology: gradient accumulation
equals one whole batch (also with FGM), 2 mirrored replicas equal one device
with dropout on (encoder and classifier masks keyed on the example), dropout
changes the result (so those checks can fail), `mixed_bfloat16` and
`mixed_float16` (a loss-scale optimizer) learn, and a classifier checkpoint
(Google's `output_weights`/`output_bias`, an HF `BertForSequenceClassification`
directory) used as `--init` gives its logits at step 0."""

import json
import logging

import numpy as np
import pytest

from pretraining.finetune.config import FinetuneExperiment

SEQ = 16


def _arrays(n, seed):
    """A separable task (as test_finetune's colours): 3 of every 7 tokens are
    from the label's family of 8 words, the others fillers."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype("int32")
    family = 12 + 8 * labels[:, None] + rng.integers(0, 8, (n, SEQ - 1))
    filler = rng.integers(28, 128, (n, SEQ - 1))
    words = np.where(rng.random((n, SEQ - 1)) < 3 / 7, family, filler)
    ids = np.concatenate([np.full((n, 1), 2), words], axis=1).astype("int32")  # [CLS] first
    mask = np.ones((n, SEQ), "int32")
    mask[::3, 12:] = 0  # some padding
    return {"input_ids": ids * mask, "input_mask": mask,
            "segment_ids": np.zeros((n, SEQ), "int32"), "label": labels}


def _experiment(*extra, steps=3):
    return FinetuneExperiment.from_dict({"model": "bert_test", "finetune": {
        "train_file": "unused.tsv", "max_seq_length": SEQ}}, overrides=[
        "model.num_hidden_layers=1", "model.hidden_dropout_prob=0.1",
        "model.attention_probs_dropout_prob=0.1", "finetune.classifier_dropout=0.1",
        "optimizer.learning_rate=0.003", "optimizer.warmup_steps=0", f"train.steps={steps}",
        "train.global_batch_size=8", f"train.steps_per_loop={steps}", "train.eval_every=0",
        f"train.checkpoint_every={steps}", *extra])


def _train(model_dir, *extra, strategy=None, steps=3, eval_arrays=None):
    """Trains; returns (every weight by path, the metrics records, trainer)."""
    from data_pipeline.labelled import LabelSpec
    from pretraining.finetune.trainer import FinetuneTrainer, TaskData
    task = TaskData("t", LabelSpec("single_label", ("a", "b")), _arrays(64, 0), eval_arrays)
    trainer = FinetuneTrainer(_experiment(*extra, steps=steps), str(model_dir), task, strategy)
    try:
        trainer.train()
    finally:
        trainer.close()
    return ({v.path: v.numpy() for v in trainer.model.weights if "seed_generator" not in v.path},
            trainer.log.records(), trainer)


def _relative(a, b) -> float:
    """The largest relative difference (Frobenius norms) of the weights."""
    assert a.keys() == b.keys() and a
    return max(np.linalg.norm(b[p] - a[p]) / max(np.linalg.norm(a[p]), 1e-3) for p in a)


FGM = 'finetune.adversarial={"method": "fgm", "epsilon": 0.5}'


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One device, the whole batch at once, dropout on."""
    weights, records, _ = _train(tmp_path_factory.mktemp("reference"))
    return weights, records


def _assert_same_run(reference, run):
    (a, records), (b, other) = reference, run[:2]
    for x, y in zip(records, other):
        np.testing.assert_allclose(y["loss"], x["loss"], rtol=1e-6)
        np.testing.assert_allclose(y["grad_norm"], x["grad_norm"], rtol=1e-5)
    assert _relative(a, b) < 1e-5


def test_accumulation_equals_the_whole_batch(reference, tmp_path):
    """2 micro-batches of 4 == 8 at once, dropout on (keyed on the global
    example index, so each row keeps its masks). Measured: 1.1e-6 relative."""
    _assert_same_run(reference, _train(tmp_path, "train.gradient_accumulation_steps=2"))
    recorded = json.loads((tmp_path / "topology.json").read_text())  # as pretraining's
    assert recorded == {"replicas": 1, "hosts": 1, "gradient_accumulation_steps": 2, "step": 0}


def test_mirrored_with_dropout_equals_one_device(reference, tmp_path, mirrored):
    """Dropout on in the encoder and the classifier: 2 replicas (each its 4
    rows of the global batch) give one device's weights. Measured: 1.1e-6."""
    _assert_same_run(reference, _train(tmp_path, strategy=mirrored))


def test_dropout_changes_the_run(reference, tmp_path):
    """Without dropout the weights differ by far more than the tolerance of
    the equalities above, so those can fail. Measured: 0.87 (the largest over the variables)."""
    off, _, _ = _train(tmp_path, "model.hidden_dropout_prob=0",
                       "model.attention_probs_dropout_prob=0", "finetune.classifier_dropout=0")
    assert _relative(reference[0], off) > 1e-3


def test_fgm_with_accumulation_equals_the_whole_batch(tmp_path):
    """FGM (r from the accumulated embedding gradient), dropout on: 2
    micro-batches of 4 == one batch of 8. Measured: 2.8e-7 relative."""
    one = _train(tmp_path / "one", FGM)
    _assert_same_run(one[:2], _train(tmp_path / "two", FGM,
                                     "train.gradient_accumulation_steps=2"))


@pytest.mark.extended  # ~30 s of CPU: FGM × accumulation × replicas traces 8 passes
def test_fgm_with_accumulation_on_two_replicas_equals_one_device(tmp_path, mirrored):
    """FGM (r from the all-reduced, accumulated embedding gradient), dropout
    on: 2 replicas × 2 micro-batches of 2 == one device's batch of 8.
    Measured: 4.5e-7 relative."""
    one = _train(tmp_path / "one", FGM)
    _assert_same_run(one[:2], _train(tmp_path / "two", FGM,
                                     "train.gradient_accumulation_steps=2", strategy=mirrored))


def test_classifier_dropout_is_keyed_on_the_example(repo_root):
    """The classifier's mask of a row depends on the step's seed and the
    row's global example index only: the batch in two halves (as two
    replicas or micro-batches see it) gives the whole batch's logits; another
    seed gives other masks."""
    from pretraining import dropout
    from pretraining.config import BertConfig
    from pretraining.finetune.model import build_classifier
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    model = build_classifier(config, 3, classifier_dropout=0.5)  # encoder dropout 0
    batch = {k: v for k, v in _arrays(8, 0).items() if k != "label"}
    index = np.arange(8, dtype="int32")

    def logits(rows, seed=3):
        inputs = {k: v[rows] for k, v in batch.items()}
        inputs.update(example_index=index[rows], dropout_seed=dropout.step_seed(seed, 5))
        return np.asarray(model(inputs, training=True)["logits"])

    whole = logits(slice(0, 8))
    halves = np.concatenate([logits(slice(0, 4)), logits(slice(4, 8))])
    np.testing.assert_array_equal(halves, whole)
    assert np.abs(logits(slice(0, 8), seed=4) - whole).max() > 1e-3
    assert np.abs(whole - np.asarray(model(batch)["logits"])).max() > 1e-3  # dropout is on


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_learns(tmp_path, policy):
    """30 steps of the separable task: the loss falls from ~0.69 and the
    accuracy is high; float16 trains through a loss-scale optimizer (as
    pretraining's). Measured (loss at steps 1, 10, 20, 30; accuracy):
    float32 0.693 0.683 0.477 0.107, 97%; bfloat16 0.693 0.683 0.477 0.107,
    95%; float16 0.693 0.684 0.489 0.114, 95%."""
    import keras
    weights, records, trainer = _train(tmp_path, f"train.mixed_precision={policy}",
                                       "train.steps_per_loop=10", "train.log_every=10",
                                       "optimizer.learning_rate=0.01", steps=30)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer) == (
        policy == "mixed_float16")
    assert trainer.model.encoder.dtype_policy.name == policy
    losses = [r["loss"] for r in records if "loss" in r]
    assert all(np.isfinite(losses)) and all(np.isfinite(w).all() for w in weights.values())
    assert losses[-1] < 0.3 * losses[0], losses
    dev = _arrays(64, 1)
    accuracy = np.mean(trainer.outputs(dev).argmax(-1) == dev["label"])
    assert accuracy >= 0.9, accuracy
    assert keras.mixed_precision.global_policy().name == "float32"  # not leaked


def test_float16_overflow_skips_the_step(tmp_path, caplog):
    """Under mixed_float16 a step whose scaled gradients overflow is skipped
    by the loss-scale optimizer (weights unchanged, scale halved) and
    logged, not taken for a diverged run; a resume in another precision is
    refused."""
    from absl import logging as absl_logging
    from data_pipeline.labelled import LabelSpec
    from pretraining.finetune.trainer import FinetuneTrainer, TaskData
    task = TaskData("t", LabelSpec("single_label", ("a", "b")), _arrays(64, 0))
    trainer = FinetuneTrainer(_experiment("train.mixed_precision=mixed_float16", steps=2),
                              str(tmp_path), task)
    absl_logging.get_absl_logger().propagate = True
    caplog.set_level(logging.INFO)
    try:
        before = [v.numpy() for v in trainer.model.trainable_variables]
        trainer.optimizer.dynamic_scale.assign(1e30)  # float16 gradients: inf
        summary = trainer.train()
    finally:
        trainer.close()
    assert summary["step"] == 2 and np.isfinite(summary["loss"])
    for old, v in zip(before, trainer.model.trainable_variables):
        np.testing.assert_array_equal(v.numpy(), old, err_msg=v.path)
    assert float(trainer.optimizer.dynamic_scale.numpy()) == pytest.approx(0.25e30)
    assert "overflowed at the loss scale" in caplog.text
    # A resume keeps the precision (float16's optimizer state has the scale).
    with pytest.raises(ValueError, match=r"fine-tuned with train.mixed_precision="
                                         r"'mixed_float16' \(received 'float32'\)"):
        FinetuneTrainer(_experiment(steps=2), str(tmp_path), task)


def test_accumulation_must_split_the_batch(tmp_path):
    with pytest.raises(ValueError, match=r"global_batch_size=8 must divide by the 1 replica"
                                         r".*gradient_accumulation_steps=3: pick a multiple "
                                         r"of 3"):
        _train(tmp_path / "run", "train.gradient_accumulation_steps=3")


# ------------------------------------------------------------------ the head of --init
def _pooled_logits(g, batch, config, weights, bias):
    """NumPy: Google's encoder, pooler (tanh dense of [CLS]), then the head."""
    from tests.pretraining import numpy_bert
    x = numpy_bert.google_sequence_output(g, batch, config.num_hidden_layers,
                                          config.num_attention_heads)
    f64 = lambda name: g[name].astype("float64")  # noqa: E731
    pooled = np.tanh(x[:, 0] @ f64("bert/pooler/dense/kernel") + f64("bert/pooler/dense/bias"))
    return pooled @ weights.astype("float64").T + bias.astype("float64")


def _trainer_from_init(init_path, model_dir, labels):
    """A fine-tuning trainer built as the CLI builds it, from `--init`."""
    from data_pipeline.labelled import LabelSpec
    from pretraining.finetune import prepare
    from pretraining.finetune.trainer import FinetuneTrainer, TaskData
    from tests.pretraining.test_finetune import _batch
    experiment = FinetuneExperiment.from_dict(
        {"finetune": {"train_file": "unused.tsv", "init": init_path, "max_seq_length": 16}},
        overrides=["train.global_batch_size=2"])
    experiment, init = prepare.resolve_model(experiment)
    arrays = {**_batch(experiment.model.vocab_size, 16), "label": np.array([0, 1], "int32")}
    task = TaskData("t", LabelSpec("single_label", tuple(labels)), arrays)
    return FinetuneTrainer(experiment, str(model_dir), task, init=init)


@pytest.mark.parametrize("layout", ["google", "hf"])
def test_init_from_a_classifier_starts_from_its_head(tmp_path, repo_root, layout, caplog):
    """A `run_classifier.py` checkpoint, or the same weights as an HF
    `BertForSequenceClassification` directory: with the task's label count
    the step-0 logits are the checkpoint's (NumPy, 1e-5; measured 3.8e-7 on
    logits up to 2.7); with another count the head starts afresh and the log
    says why."""
    from absl import logging as absl_logging
    from pretraining import convert
    from pretraining.config import BertConfig
    from pretraining.formats import hf_classifier
    from tests.pretraining.test_convert import _write_google_checkpoint
    from tests.pretraining.test_finetune import _batch, _vocab
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    rng = np.random.default_rng(7)
    head = {"output_weights": rng.normal(0, 0.5, (2, config.hidden_size)).astype("float32"),
            "output_bias": rng.normal(0, 0.5, 2).astype("float32")}
    g = _write_google_checkpoint(str(tmp_path / "google"), config, extra=head)
    _vocab(str(tmp_path / "google"))
    init = str(tmp_path / "google")
    if layout == "hf":
        bundle = convert.load(init, "google", heads="encoder")
        hf_classifier.write(str(tmp_path / "hf"), bundle, hf_classifier.ClassifierHead(
            "single_label", ["a", "b"], head["output_weights"], head["output_bias"]))
        init = str(tmp_path / "hf")
    batch = _batch()
    expected = _pooled_logits(g, batch, config, head["output_weights"], head["output_bias"])
    absl_logging.get_absl_logger().propagate = True
    caplog.set_level(logging.INFO)
    trainer = _trainer_from_init(init, tmp_path / "ft", "ab")
    try:
        logits = np.asarray(trainer.model(batch)["logits"])
    finally:
        trainer.close()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected).max() > 0.1  # not trivially zero
    assert "the classifier head starts from" in caplog.text
    # Three labels: the 2-output head cannot serve; a fresh one (truncated
    # normal of stddev initializer_range=0.02, zero bias).
    caplog.clear()
    trainer = _trainer_from_init(init, tmp_path / "ft3", "abc")
    try:
        fresh = trainer.model.heads[0]
        assert fresh.output_weights.shape == (3, config.hidden_size)
        assert np.abs(fresh.output_weights.numpy()).max() <= 2 * config.initializer_range
        assert not fresh.output_bias.numpy().any()
    finally:
        trainer.close()
    assert "has a 2-output classifier, the single_label task has 3 label(s): the head starts " \
           "afresh" in caplog.text
