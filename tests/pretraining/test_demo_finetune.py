"""The demo's fine-tuning step (`pretraining.demo_finetune`): what it needs
before it runs, and how it prints its three figures. (The whole demo runs in
minutes, not in the suite: `make demo-finetune`.)"""

import pytest

from pretraining import demo_finetune


def test_without_a_pretrained_demo_it_says_what_to_run(tmp_path):
    with pytest.raises(ValueError, match=r"No pretrained demo in .*python -m pretraining.demo"):
        demo_finetune.run(str(tmp_path))
    assert not (tmp_path / demo_finetune.FINETUNE_DIR).exists()  # Nothing half-written.


def test_describe_prints_pretrained_scratch_and_majority(tmp_path):
    run = {"eval_accuracy": 0.625, "eval_macro_f1": 0.5, "wall_seconds": 61.0}
    summary = {"run_dir": str(tmp_path), "labels": ["a", "b", "c"], "train_examples": 90,
               "eval_examples": 30, "majority_label": "b", "majority_accuracy": 0.4,
               "pretrained": run, "scratch": {**run, "eval_accuracy": 0.5}}
    text = demo_finetune.describe(summary)
    lines = {line.split("  ")[1].strip(): line for line in text.splitlines()
             if line.startswith("  ") and "%" in line}
    assert "62.5%" in lines["fine-tuned from the demo checkpoint"]
    assert "50.0%" in lines["same model from random weights"]
    assert "40.0%" in lines["majority class (b)"]
    assert "pretraining's gain here: +12.5 points of held-out accuracy" in text


def test_describe_names_the_share_of_the_train_split(tmp_path):
    run = {"eval_accuracy": 0.5, "eval_macro_f1": 0.5, "wall_seconds": 1.0}
    summary = {"run_dir": str(tmp_path), "labels": ["a", "b"], "train_examples": 9,
               "eval_examples": 30, "majority_label": "b", "majority_accuracy": 0.4,
               "pretrained": run, "scratch": run, "train_fraction": 0.1}
    assert "9 train (10% of the labelled ones) / 30 held-out" in demo_finetune.describe(summary)
    summary["train_fraction"] = 1.0
    assert "9 train / 30 held-out" in demo_finetune.describe(summary)


def test_a_bad_fraction_or_another_runs_fraction_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--finetune_train_fraction must be in \(0, 1\]\. "
                                         r"Received: 1.5"):
        demo_finetune.run(str(tmp_path), train_fraction=1.5)
    task_file = tmp_path / "task.json"
    demo_finetune.check_same_fraction(str(task_file), 0.1)  # No earlier run: nothing to check.
    task_file.write_text('{"train_fraction": 0.25}')
    demo_finetune.check_same_fraction(str(task_file), 0.25)
    with pytest.raises(ValueError, match=r"task.json: .*train_fraction=0.25, not "
                                         r"--finetune_train_fraction=0.1: add --overwrite"):
        demo_finetune.check_same_fraction(str(task_file), 0.1)
    # Through `run`: refused before the pretraining is called; --overwrite goes on.
    data = tmp_path / "demo" / demo_finetune.FINETUNE_DIR / "data"
    data.mkdir(parents=True)
    (data / "task.json").write_text('{"train_fraction": 0.25}')

    def pretrain():
        raise AssertionError("pretraining reached")

    with pytest.raises(ValueError, match="train_fraction=0.25, not"):
        demo_finetune.run(str(tmp_path / "demo"), pretrain=pretrain, train_fraction=0.1)
    with pytest.raises(ValueError, match="No pretrained demo"):
        demo_finetune.run(str(tmp_path / "demo"), overwrite=True, train_fraction=0.1)
