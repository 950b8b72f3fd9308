"""Fine-tuning (`pretraining.finetune`): a separable task learnt through the
CLI's path, `--init` from each checkpoint layout giving that checkpoint's
encoder outputs, resume, the run's files and the bad-input errors."""

import json
import os

import numpy as np
import pytest

from pretraining.finetune import __main__ as finetune_cli
from pretraining.finetune.config import FinetuneExperiment

WARM = ["red", "orange", "yellow", "fire", "sun", "hot", "flame", "ember"]
COOL = ["blue", "green", "ice", "snow", "sea", "cold", "frost", "rain"]
FILLER = ["the", "a", "is", "was", "very", "quite", "and", "of"]


def _vocab(directory) -> str:
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WARM + COOL
                          + FILLER) + "\n")
    return path


def _rows(n, seed):
    """Sentences whose label is the colour family of their coloured words."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = rng.integers(2)
        words = list(rng.choice([WARM, COOL][label], 3)) + list(rng.choice(FILLER, 4))
        rng.shuffle(words)
        rows.append((" ".join(words), ["warm", "cool"][label]))
    return rows


def _tsv(path, rows, label=True):
    with open(path, "w") as f:
        f.write("sentence\tlabel\n" if label else "sentence\n")
        for text, name in rows:
            f.write(f"{text}\t{name}\n" if label else f"{text}\n")
    return str(path)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    return {"vocab": _vocab(str(root)),
            "train": _tsv(root / "train.tsv", _rows(256, 0)),
            "eval": _tsv(root / "dev.tsv", _rows(64, 1)),
            "test": _tsv(root / "test.tsv", _rows(8, 2), label=False)}


def _experiment(colours, *extra, steps=60):
    overrides = [f"finetune.train_file={colours['train']}",
                 f"finetune.eval_file={colours['eval']}", "finetune.text_field=sentence",
                 f"finetune.tokenizer={colours['vocab']}", "finetune.max_seq_length=16",
                 "optimizer.learning_rate=0.003", f"train.steps={steps}",
                 "train.global_batch_size=16", "train.steps_per_loop=10",
                 "train.checkpoint_every=20", "train.eval_every=30", *extra]
    data = {"model": "bert_test", "finetune": {}}
    return FinetuneExperiment.from_dict(data, overrides=overrides)


def test_separable_task_reaches_95_percent(colours, tmp_path):
    model_dir = str(tmp_path / "run")
    experiment = _experiment(colours, f"finetune.test_file={colours['test']}")
    assert experiment.optimizer.warmup_steps == 6  # the recipe: 10% of the steps
    summary = finetune_cli.run(experiment, model_dir)
    assert summary["eval_accuracy"] >= 0.95
    results = json.load(open(os.path.join(model_dir, "eval_results.json")))
    assert sorted(results, key=int) == ["30", "60"]
    assert set(results["60"]) >= {"accuracy", "macro_f1", "mcc", "loss"}
    best = json.load(open(os.path.join(model_dir, "best", "best.json")))
    assert best["value"] == max(r["accuracy"] for r in results.values())
    assert summary["best_step"] == best["step"]
    assert json.load(open(os.path.join(model_dir, "labels.json"))) == {
        "task": "single_label", "labels": ["cool", "warm"]}
    lines = [json.loads(x) for x in open(os.path.join(model_dir, "predictions.jsonl"))]
    expected = [name for _, name in _rows(8, 2)]
    assert [x["prediction"] for x in lines] == expected
