"""Conditional LayerNorm end to end: a class condition through its learned
embedding, a model started from a plain checkpoint equal to it, the manifest
checks, the shuffled-condition evaluation, cached generation with a class
condition and the generate CLI's condition flags."""

import dataclasses
import re

import numpy as np
import pytest
import tensorflow as tf

from pretraining import checkpoints, conditioning, convert
from pretraining.config import BertConfig
from pretraining.generation import GenerationConfig, Generator
from pretraining.model import BertEncoder
from pretraining.pretrainer import BertPretrainer

L = 16
CLASSES = 3


def _config(repo_root, **fields):
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    return dataclasses.replace(config, **fields)


def _inputs(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 128, size=(batch, L)).astype("int32")
    mask = np.ones_like(ids)
    mask[1:, L - 4:] = 0
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids)}


def _perturb(model, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    for v in model.weights:  # sharper than the 0.02 init; W_γ, W_β ≠ 0
        v.assign(v.numpy() + rng.normal(0, scale, v.shape).astype("float32"))


def _write_checkpoint(model, path):
    """As the trainer saves: model and a built optimizer (which names the
    variables by its slots, not by their layers)."""
    import keras

    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    return tf.train.Checkpoint(model=model, optimizer=optimizer).write(str(path))


@pytest.mark.parametrize("fields, condition", [
    ({"condition_size": 6, "condition_num_classes": CLASSES},
     np.array([[0], [2]], "int32")),
    ({"condition_size": 6, "condition_num_classes": CLASSES, "condition_hidden_size": 8,
      "condition_hidden_act": "tanh"}, np.array([[1], [1]], "int32")),
    ({"condition_size": 5}, np.random.default_rng(7).normal(size=(2, 5)).astype("float32")),
], ids=["class", "class-dense", "vector"])
def test_plain_checkpoint_gives_the_plain_outputs(repo_root, tmp_path, fields, condition):
    """A conditioned model initialised from an unconditioned checkpoint (the
    trainer's init_checkpoint path) gives the plain model's logits to 1e-6,
    whatever the condition; once W_γ, W_β move, the condition matters."""
    plain = BertPretrainer(BertEncoder(_config(repo_root, attention_mask_type="causal")), "lm")
    _perturb(plain, scale=0.05)
    prefix = _write_checkpoint(plain, tmp_path / "plain")
    model = BertPretrainer(BertEncoder(_config(repo_root, attention_mask_type="causal",
                                               **fields)), "lm")
    restored = checkpoints.load_init_checkpoint(prefix, model)
    assert restored == ["encoder", "masked_lm"]
    inputs = _inputs()
    expected = plain(inputs)["lm_logits"].numpy()
    got = model({**inputs, "condition": condition})["lm_logits"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    extra = [v for v in model.weights if conditioning.is_condition_variable(v.path)]
    assert extra and all(not np.any(v.numpy()) for v in extra
                         if "gamma_dense" in v.path or "beta_dense" in v.path)
    for v in extra:
        v.assign(np.random.default_rng(1).normal(0, 0.5, v.shape).astype("float32"))
    other = conditioning.shuffled({"condition": tf.constant(condition)}, model.encoder.config)
    moved = model({**inputs, "condition": condition})["lm_logits"].numpy()
    moved_other = model({**inputs, **other})["lm_logits"].numpy()
    assert np.abs(moved - expected).max() > 1e-3
    assert np.abs(moved - moved_other).max() > 1e-3


def test_conditioned_checkpoint_into_a_plain_model_is_refused(repo_root, tmp_path):
    conditioned = BertPretrainer(BertEncoder(_config(
        repo_root, condition_size=4, condition_num_classes=CLASSES)))
    prefix = _write_checkpoint(conditioned, tmp_path / "cond")
    plain = BertPretrainer(BertEncoder(_config(repo_root)))
    with pytest.raises(ValueError, match="holds a conditioned model.*condition_size=0"):
        checkpoints.load_init_checkpoint(prefix, plain)


def test_class_condition_is_the_embedding_row(repo_root):
    """Class id k gives the outputs of the vector condition = embedding row k."""
    by_class = BertEncoder(_config(repo_root, condition_size=4, condition_num_classes=CLASSES))
    _perturb(by_class)
    by_vector = BertEncoder(_config(repo_root, condition_size=4))
    weights = {v.path: v for v in by_class.weights}
    for v in by_vector.weights:
        v.assign(weights[v.path].numpy())
    table = by_class.condition_embeddings.embeddings.numpy()
    assert by_class.condition_embeddings.embeddings.path == "bert/condition_embeddings/embeddings"
    inputs = _inputs()
    ids = np.array([[2], [0]], "int32")
    got = by_class({**inputs, "condition": ids})["sequence_output"].numpy()
    expected = by_vector({**inputs, "condition": table[ids[:, 0]]})["sequence_output"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"class ids of shape \(batch, 1\)"):
        by_class({**inputs, "condition": table[ids[:, 0]]})


def test_shuffled_condition_is_another_one():
    config = BertConfig(vocab_size=10, condition_size=4, condition_num_classes=3)
    out = conditioning.shuffled({"condition": tf.constant([[0], [1], [2]])}, config)
    np.testing.assert_array_equal(out["condition"].numpy(), [[1], [2], [0]])
    vectors = np.arange(6, dtype="float32").reshape(3, 2)
    config = BertConfig(vocab_size=10, condition_size=2)
    out = conditioning.shuffled({"condition": tf.constant(vectors)}, config)
    np.testing.assert_array_equal(out["condition"].numpy(), vectors[[2, 0, 1]])


@dataclasses.dataclass
class _Manifest:
    condition: dict | None


@pytest.mark.parametrize("condition, fields, match", [
    ({"kind": "class", "size": 3, "labels": ["a", "b", "c"]}, {},
     r"data has a class condition of size 3, model has no condition \(condition_size=0\)"),
    (None, {"condition_size": 4, "condition_num_classes": 3},
     "data has none, model has a class condition with condition_num_classes=3"),
    ({"kind": "class", "size": 3, "labels": ["a", "b", "c"]},
     {"condition_size": 4, "condition_num_classes": 5},
     "data has a class condition with 3 classes, .*condition_num_classes=5"),
    ({"kind": "vector", "size": 6, "labels": []}, {"condition_size": 4},
     "data has a vector condition of size 6, .*condition_size=4"),
    ({"kind": "vector", "size": 4, "labels": []},
     {"condition_size": 4, "condition_num_classes": 2},
     "data has a vector condition of size 4, .*condition_num_classes=2"),
])
def test_manifest_mismatch_names_both_values(condition, fields, match):
    config = BertConfig(vocab_size=10, **fields)
    problems = conditioning.check_manifest(_Manifest(condition), config)
    assert len(problems) == 1
    assert re.search(match, problems[0]), problems[0]


def test_manifest_match_passes():
    class_config = BertConfig(vocab_size=10, condition_size=8, condition_num_classes=3)
    assert not conditioning.check_manifest(
        _Manifest({"kind": "class", "size": 3, "labels": ["a", "b", "c"]}), class_config)
    assert not conditioning.check_manifest(
        _Manifest({"kind": "vector", "size": 8, "labels": []}),
        BertConfig(vocab_size=10, condition_size=8))
    assert not conditioning.check_manifest(_Manifest(None), BertConfig(vocab_size=10))


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_cached_generation_with_a_class_condition_equals_full_forward(repo_root, method):
    """Each cached step's logits equal the whole sequence's forward pass with
    the same class condition (1e-4); greedy decoding reproduces them."""
    config = _config(repo_root, attention_mask_type="causal", condition_size=6,
                     condition_num_classes=CLASSES)
    model = BertPretrainer(BertEncoder(config), "lm")
    _perturb(model)
    generator = Generator(model, L, sep_id=3)
    inputs = _inputs()
    ids, mask = inputs["input_ids"].copy(), np.zeros_like(inputs["input_mask"])
    lengths = np.array([5, 3])
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = 0
    condition = np.array([[2], [0]], "int32")
    options = GenerationConfig(method=method, max_new_tokens=4, min_new_tokens=4,
                               num_beams=2)
    out = generator.generate(ids, mask, np.zeros_like(ids), options, condition=condition)
    if method == "greedy":  # the full forward pass picks the same tokens
        seq, valid = ids.copy(), mask.copy()
        for step in range(4):
            logits = model({"input_ids": seq, "input_mask": valid,
                            "segment_ids": np.zeros_like(seq),
                            "condition": condition})["lm_logits"].numpy()
            position = lengths + step
            token = logits[np.arange(2), position - 1].argmax(-1)
            np.testing.assert_array_equal(out[:, step], token)
            seq[np.arange(2), position] = token
            valid[np.arange(2), position] = 1
    logits, cache = generator.context_logits(ids, mask, np.zeros_like(ids),
                                             tf.constant(condition))
    full = model({"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids),
                  "condition": condition})["lm_logits"].numpy()
    np.testing.assert_allclose(logits.numpy(), full[np.arange(2), lengths - 1],
                               rtol=1e-4, atol=1e-4)
    other = generator.generate(ids, mask, np.zeros_like(ids), options,
                               condition=np.array([[1], [1]], "int32"))
    assert not np.array_equal(out, other)
    with pytest.raises(ValueError, match=r"condition_num_classes=3.*\(2, 1\)"):
        generator.generate(ids, mask, np.zeros_like(ids), options)
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        generator.generate(ids, mask, np.zeros_like(ids), options,
                           condition=np.array([[3], [0]], "int32"))


# ---------------------------------------------------------------- records → train → generate
LABELS = ("alpha", "beta", "gamma")


def _documents(corpus_path):
    with open(corpus_path, encoding="utf-8") as f:
        return [d.strip() for d in f.read().split("\n\n") if d.strip()]


class _CondData(dict):
    """Conditioned records of the `mlm_data` corpus, built when first asked
    for (`cond_data["lm_label"]`, `"seq2seq_vector"`, `"mlm_label"`): the
    first 120 documents, each labelled alpha/beta/gamma (class) and given a
    2-float vector."""

    def __init__(self, mlm_data, root):
        super().__init__()
        self.mlm_data, self.root = mlm_data, root

    def __missing__(self, name):
        self[name] = self._build(name)
        return self[name]

    def _build(self, name):
        import json

        from data_pipeline import builder, sources, tasks

        mlm_data, root = self.mlm_data, self.root
        jsonl = root / "docs.jsonl"
        with open(jsonl, "w", encoding="utf-8") as f:
            for i, text in enumerate(_documents(mlm_data["corpus"])[:120]):
                f.write(json.dumps({"text": text, "label": LABELS[i % 3],
                                    "vector": [float(i % 3), 1.0 - (i % 2)]}) + "\n")
        task, field = name.split("_")
        task_config = tasks.TaskConfig(task=task, max_seq_length=32,
                                       max_predictions_per_seq=5) if task == "mlm" else \
            tasks.TaskConfig(task=task, max_seq_length=32)
        builder.build([str(jsonl)], mlm_data["tokenizer"], str(root / name), task=task_config,
                      source=sources.SourceConfig(input_format="jsonl", split_sentences=True,
                                                  condition_field=field),
                      seed=1, num_shards=2, eval_fraction=0.1)
        return {"train_dir": str(root / name / "train"), "eval_dir": str(root / name / "eval"),
                "vocab_size": mlm_data["vocab_size"]}


@pytest.fixture(scope="module")
def cond_data(mlm_data, tmp_path_factory):
    return _CondData(mlm_data, tmp_path_factory.mktemp("cond_data"))


def _experiment(data, task, condition, **train):
    from tests.conftest import tiny_experiment

    experiment = tiny_experiment(data, **train)
    experiment.task = task
    experiment.model.attention_mask_type = {"mlm": "bidirectional", "lm": "causal",
                                            "seq2seq": "unilm"}[task]
    experiment.model.hidden_dropout_prob = 0.0
    experiment.model.attention_probs_dropout_prob = 0.0
    if condition == "class":
        experiment.model.condition_num_classes = len(LABELS)
        experiment.model.condition_size = 8
    else:
        experiment.model.condition_size = 2
        experiment.model.condition_hidden_size = 8
    experiment.__post_init__()
    return experiment


def _train(experiment, model_dir, strategy=None):
    from pretraining.trainer import Trainer

    trainer = Trainer(experiment, str(model_dir), strategy)
    summary = trainer.train()
    weights = {v.path: v.numpy() for v in trainer.state.model.weights}
    trainer.close()
    return summary, weights, trainer.log.records()


def _assert_same_runs(one, two, weight_rtol):
    (s_one, w_one, r_one), (s_two, w_two, r_two) = one, two
    assert len(r_one) == len(r_two) > 1
    for a, b in zip(r_one, r_two):
        if "loss" in a:
            np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
    np.testing.assert_allclose(s_one["eval_loss"], s_two["eval_loss"], rtol=1e-5)
    for path, value in w_one.items():
        diff = np.linalg.norm(w_two[path] - value) / max(np.linalg.norm(value), 1e-3)
        assert diff < weight_rtol, (path, diff)


@pytest.fixture(scope="module")
def class_lm_run(cond_data, tmp_path_factory):
    """A 6-step class-conditioned causal LM, one device."""
    model_dir = tmp_path_factory.mktemp("class_lm_run")
    experiment = _experiment(cond_data["lm_label"], "lm", "class", steps=6,
                             global_batch_size=8, steps_per_loop=3, checkpoint_every=6,
                             eval_steps=4)
    return model_dir, experiment, _train(experiment, model_dir)


def test_mirrored_equals_default_with_a_condition(class_lm_run, tmp_path, mirrored):
    """Two replicas feed the class condition as one device does: loss at
    every logged step rtol 1e-6, weights 1e-5 relative; the condition's own
    weights have moved."""
    _, experiment, one = class_lm_run
    two = _train(experiment, tmp_path, mirrored)
    _assert_same_runs(one, two, 1e-5)
    moved = [path for path, value in one[1].items()
             if conditioning.is_condition_variable(path) and "embeddings" not in path]
    assert moved and all(np.abs(one[1][path]).max() > 0 for path in moved)


@pytest.mark.extended
@pytest.mark.parametrize("task, data", [("seq2seq", "seq2seq_vector"), ("mlm", "mlm_label")])
def test_condition_under_accumulation_and_xla(cond_data, tmp_path, task, data):
    """seq2seq (vector condition) and mlm (class): 2 micro-batches with XLA
    equal the whole batch without."""
    condition = "vector" if "vector" in data else "class"
    settings = dict(steps=6, global_batch_size=8, steps_per_loop=3, checkpoint_every=6,
                    eval_steps=4)
    one = _train(_experiment(cond_data[data], task, condition, **settings), tmp_path / "a")
    two = _train(_experiment(cond_data[data], task, condition, gradient_accumulation_steps=2,
                             jit_compile=True, **settings), tmp_path / "b")
    _assert_same_runs(one, two, 1e-5)


def test_records_and_model_must_agree_on_the_condition(cond_data, tmp_path):
    from pretraining.trainer import Trainer
    from tests.conftest import tiny_experiment

    plain = tiny_experiment(cond_data["lm_label"])
    plain.task, plain.model.attention_mask_type = "lm", "causal"
    with pytest.raises(ValueError, match="data has a class condition of size 3, model has no "
                                         r"condition \(condition_size=0\)"):
        Trainer(plain, str(tmp_path / "a"))
    vector = _experiment(cond_data["lm_label"], "lm", "vector")
    with pytest.raises(ValueError, match="class condition with 3 classes, model has a vector"):
        Trainer(vector, str(tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_shuffled_condition_evaluation(class_lm_run):
    from pretraining import evaluate

    model_dir, _, (summary, _, _) = class_lm_run
    true = evaluate.evaluate(str(model_dir))
    np.testing.assert_allclose(true["eval_loss"], summary["eval_loss"], rtol=1e-5)
    shuffled = evaluate.evaluate(str(model_dir), eval_condition="shuffled")
    assert shuffled["eval_condition"] == "shuffled"
    assert shuffled["eval_predictions"] == true["eval_predictions"]
    assert shuffled["eval_loss"] != true["eval_loss"]  # the condition reaches the loss


def test_generate_cli_for_two_conditions(class_lm_run, mlm_data, capsys):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    model_dir = class_lm_run[0]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    base = [sys.executable, "-m", "pretraining.generate", f"--model_dir={model_dir}",
            f"--tokenizer={mlm_data['tokenizer']}", "--prompt=Return the", "--method=sample",
            "--seed=1", "--max_new_tokens=6"]
    result = subprocess.run(base + ["--condition=alpha,gamma"], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "[condition=alpha]" and lines[2] == "[condition=gamma]", lines
    assert lines[1].startswith("Return the => ") and lines[3].startswith("Return the => ")

    from data_pipeline import cli
    from pretraining import generate
    from pretraining.generation import GenerationConfig
    for flags, message in (({"condition": "delta"},
                            "--condition='delta' is not among the run's labels: "
                            "alpha,beta,gamma."),
                           ({}, "give --condition=LABEL[,LABEL...] (labels: alpha,beta,gamma)")):
        with pytest.raises(SystemExit) as exit_info:
            cli.run_or_exit(generate.run, str(model_dir), mlm_data["tokenizer"], ["Return"],
                            GenerationConfig(max_new_tokens=4), **flags)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1, err
        assert message in err[0], err


@pytest.mark.parametrize("labels, vector, match", [
    ("", "", r"give --condition=LABEL\[,LABEL...\] \(labels: alpha,beta,gamma\)"),
    ("", "[1, 2]", "--condition_vector is for a vector-conditioned run"),
    ("alpha,zeta", "", "--condition='zeta' is not among the run's labels"),
])
def test_generation_condition_errors(labels, vector, match):
    config = BertConfig(vocab_size=10, condition_size=4, condition_num_classes=3)
    manifest = {"kind": "class", "size": 3, "labels": list(LABELS)}
    with pytest.raises(ValueError, match=match):
        conditioning.generation_conditions(config, manifest, labels, vector)


def test_generation_conditions_map_labels_and_vectors():
    config = BertConfig(vocab_size=10, condition_size=4, condition_num_classes=3)
    names, arrays = conditioning.generation_conditions(
        config, {"kind": "class", "size": 3, "labels": list(LABELS)}, "gamma,alpha", "")
    assert names == ["gamma", "alpha"] and [a.tolist() for a in arrays] == [[[2]], [[0]]]
    config = BertConfig(vocab_size=10, condition_size=2)
    names, arrays = conditioning.generation_conditions(config, None, "", "[[1, 2], [3, 4]]")
    assert [a.tolist() for a in arrays] == [[[1.0, 2.0]], [[3.0, 4.0]]]
    with pytest.raises(ValueError, match="2 numbers per vector"):
        conditioning.generation_conditions(config, None, "", "[1, 2, 3]")
    with pytest.raises(ValueError, match="give --condition_vector"):
        conditioning.generation_conditions(config, None, "", "")
    with pytest.raises(ValueError, match="condition_size=0: drop the flag"):
        conditioning.generation_conditions(BertConfig(vocab_size=10), None, "a", "")


def test_class_condition_weights_are_left_out_of_google_and_hf(repo_root, tmp_path, caplog):
    """The class embedding has no Google/Hugging Face name: the converters
    leave it out with the other Conditional LayerNorm weights, and its names
    never collide with Google's."""
    from pretraining import checkpoint_names
    from tests.pretraining.test_convert_native import _trainer_run

    config = _config(repo_root, condition_size=4, condition_num_classes=CLASSES)
    raw, _ = _trainer_run(tmp_path, config)
    extras = sorted(p for p in raw if conditioning.is_condition_variable(p))
    assert "bert/condition_embeddings/embeddings" in extras
    assert all(checkpoint_names.lookup(p) is None for p in extras)
    for output_format in ("hf", "google"):
        result = convert.convert(str(tmp_path), "native", str(tmp_path / output_format),
                                 output_format)
        assert sorted(result.not_representable) == extras
    assert "condition_num_classes" in caplog.text


def test_google_checkpoint_into_a_conditioned_model(repo_root, tmp_path):
    """init_checkpoint from Google's layout (here written by our converter
    from a plain model): the class-conditioned model gives its outputs."""
    from pretraining.formats.bundle import Bundle

    plain = BertPretrainer(BertEncoder(_config(repo_root, attention_mask_type="causal")), "lm")
    _perturb(plain, scale=0.05)
    bundle = Bundle(plain.encoder.config, {v.path: v.numpy() for v in plain.weights})
    written = convert.save(bundle, str(tmp_path / "google"), "google").output
    model = BertPretrainer(BertEncoder(_config(
        repo_root, attention_mask_type="causal", condition_size=6,
        condition_num_classes=CLASSES)), "lm")
    checkpoints.load_init_checkpoint(written, model)
    inputs = _inputs()
    np.testing.assert_allclose(
        model({**inputs, "condition": np.array([[2], [1]], "int32")})["lm_logits"].numpy(),
        plain(inputs)["lm_logits"].numpy(), atol=1e-6, rtol=0)


def test_conditional_lm_recipe_loads():
    """The shipped recipe: a causal LM on the demo's tokenizer, one class per
    package of the sample task, evaluated several times."""
    import inspect

    from data_pipeline import sample_task
    from pretraining.config import ExperimentConfig

    experiment = ExperimentConfig.from_json("sample_conditional_lm")
    model = experiment.model
    assert experiment.task == "lm" and model.attention_mask_type == "causal"
    assert model.vocab_size == 8000 and model.condition_size > 0
    default = inspect.signature(sample_task.write_sample_task).parameters["num_classes"].default
    assert model.condition_num_classes == default
    assert experiment.train.steps // experiment.train.eval_every >= 2
    assert "--eval_condition=shuffled" in experiment.description
