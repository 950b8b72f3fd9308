"""Fine-tuned models in the foreign formats: the `BertForSequenceClassification`
export run by `transformers` itself gives our logits (single label, multi-label,
regression), its `config.json` carries the labels and problem type, it reads
back unchanged, and Google's `output_weights`/`output_bias` are read as the
head. The transformers checks skip when it is absent (`make test-hf`)."""

import json

import numpy as np
import pytest

from pretraining import convert
from pretraining.config import BertConfig
from pretraining.formats import hf_classifier
from pretraining.formats.bundle import Bundle, build_model
from pretraining.formats.hf_classifier import ClassifierHead

TOL = dict(atol=1e-4, rtol=1e-4)
LABELS = {"single_label": ["asyncio", "email", "xml"], "multi_label": ["a", "b", "c", "d"],
          "regression": ["score"]}


def _transformers():
    pytest.importorskip("torch", reason="needs torch (make test-hf installs it)")
    return pytest.importorskip("transformers", reason="needs transformers (make test-hf)")


@pytest.fixture(scope="module")
def config(request):
    root = request.config.rootpath
    return BertConfig.from_json(f"{root}/configs/models/bert_test.json")  # tanh GELU


def _bundle(config, seed=0):
    rng = np.random.default_rng(seed)
    weights = {}
    for v in build_model(config, head=False).weights:
        value = rng.normal(0, 0.5 if len(v.shape) == 1 else 0.1, v.shape).astype("float32")
        weights[v.path] = value + (1.0 if v.path.endswith("gamma") else 0.0)
    return Bundle(config, weights, None, "test")


def _head(config, task, seed=1):
    rng = np.random.default_rng(seed)
    labels = LABELS[task]
    return ClassifierHead(task, labels,
                          rng.normal(0, 0.3, (len(labels), config.hidden_size)),
                          rng.normal(0, 0.3, len(labels)))


def _batch(vocab_size, seq=12):
    rng = np.random.default_rng(4)
    mask = np.ones((3, seq), "int32")
    mask[1, 8:] = 0
    mask[2, 5:] = 0
    segments = np.zeros((3, seq), "int32")
    segments[:, 6:] = 1
    return {"input_ids": rng.integers(5, vocab_size, (3, seq)).astype("int32") * mask,
            "input_mask": mask, "segment_ids": segments * mask}


def _our_logits(bundle, head, batch):
    """Our encoder's pooled output, then the head in NumPy."""
    pooled = np.asarray(convert.to_keras(bundle)(batch)["pooled_output"])
    return head.logits(pooled)


@pytest.mark.hf
@pytest.mark.parametrize("task", ["single_label", "multi_label", "regression"])
def test_transformers_gives_our_logits(task, config, tmp_path):
    transformers = _transformers()
    import torch
    bundle, head = _bundle(config), _head(config, task)
    hf_classifier.write(str(tmp_path), bundle, head)
    model = transformers.BertForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    assert model.config.problem_type == hf_classifier.PROBLEM_TYPES[task]
    assert model.config.num_labels == len(LABELS[task])
    assert [model.config.id2label[i] for i in range(model.config.num_labels)] == LABELS[task]
    batch = _batch(config.vocab_size)
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(batch["input_ids"], dtype=torch.long),
                       attention_mask=torch.tensor(batch["input_mask"], dtype=torch.long),
                       token_type_ids=torch.tensor(batch["segment_ids"], dtype=torch.long)
                       ).logits.numpy()
    ours = _our_logits(bundle, head, batch)
    assert theirs.shape == (3, len(LABELS[task]))
    np.testing.assert_allclose(ours, theirs, **TOL)  # Measured: max |diff| 1.8e-7 to 3e-7.
    assert np.abs(ours).max() > 0.1  # Not trivially zero.


def test_config_json_and_read_back(config, tmp_path):
    bundle, head = _bundle(config), _head(config, "multi_label")
    hf_classifier.write(str(tmp_path), bundle, head)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["architectures"] == ["BertForSequenceClassification"]
    assert data["id2label"] == {"0": "a", "1": "b", "2": "c", "3": "d"}
    assert data["label2id"] == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert data["problem_type"] == "multi_label_classification"
    back, back_head = hf_classifier.read(str(tmp_path))
    assert back_head.task == "multi_label" and back_head.labels == LABELS["multi_label"]
    np.testing.assert_array_equal(back_head.output_weights, head.output_weights)
    np.testing.assert_array_equal(back_head.output_bias, head.output_bias)
    assert set(back.weights) == set(bundle.weights)
    for path, value in bundle.weights.items():
        np.testing.assert_array_equal(back.weights[path], value, err_msg=path)


def test_task_from_config_follows_transformers_defaults():
    assert hf_classifier.task_from_config({"num_labels": 1}, "c") == "regression"
    assert hf_classifier.task_from_config({"id2label": {"0": "x", "1": "y"}}, "c") == (
        "single_label")
    with pytest.raises(ValueError, match="problem_type must be one of"):
        hf_classifier.task_from_config({"problem_type": "ranking"}, "c")


def test_bad_heads_are_refused(config, tmp_path):
    with pytest.raises(ValueError, match="one output"):
        ClassifierHead("regression", ["a", "b"], np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="labels must name"):
        ClassifierHead("single_label", ["a", "a"], np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="hidden_size is"):
        hf_classifier.write(str(tmp_path), _bundle(config),
                            ClassifierHead("single_label", ["a", "b"], np.zeros((2, 5)),
                                           np.zeros(2)))


def test_google_classifier_names_are_read_as_the_head(config, tmp_path):
    import tensorflow as tf
    from pretraining.formats import google
    bundle, head = _bundle(config), _head(config, "single_label")
    prefix = google.write(str(tmp_path), bundle)
    # Add the head as Google's run_classifier.py names it, beside bert/...
    reader = tf.train.load_checkpoint(prefix)
    names = list(reader.get_variable_to_shape_map())
    tensors = [reader.get_tensor(n) for n in names]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names + ["output_weights", "output_bias"],
                      shape_and_slices=[""] * (len(names) + 2),
                      tensors=tensors + [head.output_weights, head.output_bias])
    weights, bias = hf_classifier.read_google_head(str(tmp_path))
    np.testing.assert_array_equal(weights, head.output_weights)
    np.testing.assert_array_equal(bias, head.output_bias)
    encoder = google.read(str(tmp_path), heads="encoder")  # The head is skipped, not an error.
    np.testing.assert_array_equal(encoder.weights["bert/pooler/kernel"],
                                  bundle.weights["bert/pooler/kernel"])
    google.write(str(tmp_path / "plain"), bundle)
    assert hf_classifier.read_google_head(str(tmp_path / "plain")) is None


# ---------------------------------------------------------------- a fine-tuned run
WARM = ["red", "orange", "yellow", "fire", "sun", "hot", "flame", "ember"]
COOL = ["blue", "green", "ice", "snow", "sea", "cold", "frost", "rain"]
FILLER = ["the", "a", "is", "was", "very", "quite", "and", "of"]


def _rows(n, seed):
    """Sentences labelled by the colour family of their coloured words."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice([WARM, COOL][label], 3)) + list(rng.choice(FILLER, 4))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": ["warm", "cool"][label]})
    return rows


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A 60-step fine-tuning run of bert_test with a test split predicted."""
    from pretraining.finetune import __main__ as finetune_cli
    from pretraining.finetune.config import FinetuneExperiment
    root = tmp_path_factory.mktemp("finetuned")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WARM + COOL
                               + FILLER) + "\n")
    test_rows = _rows(8, 2)
    overrides = [f"finetune.train_file={_jsonl(root / 'train.jsonl', _rows(128, 0))}",
                 f"finetune.eval_file={_jsonl(root / 'dev.jsonl', _rows(32, 1))}",
                 f"finetune.test_file={_jsonl(root / 'test.jsonl', test_rows)}",
                 f"finetune.tokenizer={vocab}", "finetune.max_seq_length=16",
                 "optimizer.learning_rate=0.003", "train.steps=60",
                 "train.global_batch_size=16", "train.steps_per_loop=10",
                 "train.checkpoint_every=30", "train.eval_every=30"]
    experiment = FinetuneExperiment.from_dict({"model": "bert_test", "finetune": {}},
                                              overrides=overrides)
    run_dir = root / "run"
    finetune_cli.run(experiment, str(run_dir))
    predictions = [json.loads(line) for line in open(run_dir / "predictions.jsonl")]
    return {"run": str(run_dir), "texts": [r["text"] for r in test_rows],
            "labels": [r["label"] for r in test_rows],
            "scores": np.array([p["scores"] for p in predictions], np.float32)}


@pytest.mark.hf
def test_finetuned_run_to_hf_gives_the_runs_predictions(finetuned, tmp_path):
    """convert --input=RUN --output_format=hf: transformers' tokenizer and model
    on the raw test texts give the scores the run wrote to predictions.jsonl
    (its best checkpoint)."""
    transformers = _transformers()
    import torch
    out = str(tmp_path / "hf")
    result = convert.convert(finetuned["run"], "native", out, "hf")
    assert result.output.endswith("model.safetensors")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "cool", "1": "warm"}
    assert config["problem_type"] == "single_label_classification"
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.BertForSequenceClassification.from_pretrained(out).eval()
    batch = tokenizer(finetuned["texts"], padding="max_length", max_length=16,
                      truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits.numpy()
    np.testing.assert_allclose(logits, finetuned["scores"], **TOL)
    # A trained model: the scores tell the test rows apart, and mostly right.
    predicted = [model.config.id2label[i] for i in logits.argmax(-1)]
    assert sum(p == t for p, t in zip(predicted, finetuned["labels"])) >= 6, (
        predicted, finetuned["labels"], logits)


def test_finetuned_run_to_google_names_the_head(finetuned, tmp_path):
    from pretraining.formats import finetuned_run, google
    found = finetuned_run.read(finetuned["run"])
    assert found.checkpoint.split("/")[-2:-1] == ["best"]
    convert.convert(finetuned["run"], "native", str(tmp_path / "g"), "google")
    weights, bias = hf_classifier.read_google_head(str(tmp_path / "g"))
    np.testing.assert_array_equal(weights, found.head.output_weights)
    np.testing.assert_array_equal(bias, found.head.output_bias)
    encoder = google.read(str(tmp_path / "g"), heads="encoder")
    for path, value in found.bundle.weights.items():
        np.testing.assert_array_equal(encoder.weights[path], value, err_msg=path)
    assert json.loads((tmp_path / "g" / "labels.json").read_text())["labels"] == [
        "cool", "warm"]


def test_finetuned_run_refusals(finetuned, tmp_path):
    with pytest.raises(ValueError, match="is a fine-tuning run"):
        convert.convert(finetuned["run"], "native", str(tmp_path / "x"), "hf", ema=True)
    with pytest.raises(ValueError, match="written as a .keras file only|a .keras file only"):
        convert.convert(finetuned["run"], "native", str(tmp_path / "x"), "native")


@pytest.mark.parametrize("task", ["single_label", "regression"])
def test_classifier_stays_one_between_hf_and_google(task, config, tmp_path):
    """hf classifier → google (output_weights, labels.json) → hf: same head,
    labels, task and encoder; an encoder-only input gets no head."""
    bundle, head = _bundle(config), _head(config, task)
    hf_classifier.write(str(tmp_path / "hf"), bundle, head)
    convert.convert(str(tmp_path / "hf"), "hf", str(tmp_path / "g"), "google")
    weights, bias = hf_classifier.read_google_head(str(tmp_path / "g"))
    np.testing.assert_array_equal(weights, head.output_weights)
    np.testing.assert_array_equal(bias, head.output_bias)
    convert.convert(str(tmp_path / "g"), "google", str(tmp_path / "hf2"), "hf")
    back, back_head = hf_classifier.read(str(tmp_path / "hf2"))
    # Google's labels.json is a label list: a regression output's name is not in it.
    expected = ["LABEL_0"] if task == "regression" else LABELS[task]
    assert (back_head.task, back_head.labels) == (task, expected)
    np.testing.assert_array_equal(back_head.output_weights, head.output_weights)
    for path, value in bundle.weights.items():
        np.testing.assert_array_equal(back.weights[path], value, err_msg=path)
    convert.save(bundle, str(tmp_path / "plain"), "hf")
    assert hf_classifier.read_head(str(tmp_path / "plain"), "hf") is None


def test_multi_task_run_is_refused_in_one_line(tmp_path):
    from pretraining.formats import finetuned_run
    (tmp_path / "config.json").write_text(json.dumps(
        {"finetune": {"tasks": [{"name": "a"}, {"name": "b"}]}, "model": {}}))
    assert finetuned_run.is_finetune_run(str(tmp_path))
    with pytest.raises(ValueError, match="multi-task run .2 tasks") as error:
        convert.convert(str(tmp_path), "native", str(tmp_path / "hf"), "hf")
    assert "\n" not in str(error.value) and not (tmp_path / "hf").exists()
