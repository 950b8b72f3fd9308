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
