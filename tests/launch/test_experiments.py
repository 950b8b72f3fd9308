"""The recipes in configs/experiments/: they load, and the numbers their
descriptions state (fields, batch arithmetic) are the numbers in the JSON."""

import json
import os
import re

import pytest

from pretraining.config import PATH_FIELDS, ExperimentConfig, resolve_path

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = os.path.join(REPO_ROOT, "configs", "experiments")
RECIPES = ["bert_base_phase1_tpu.json", "bert_base_phase2_tpu.json", "bert_base_8gpu_lamb.json",
           "bert_base_8gpu_lamb_phase2.json", "unilm_seq2seq.json", "smoke_cpu.json"]
# Flip to False if the trainer's ExperimentConfig stops accepting task "seq2seq"
# (the recipe is then ahead of the code and must be refused with a clear message).
SEQ2SEQ_SUPPORTED = True

# "256 = 4 replicas × 64 sequences" or "… × 64 sequences × 128 accumulation steps".
ARITHMETIC = re.compile(r"([\d,]+) = (\d+) replicas? × (\d+) sequences"
                        r"(?: × (\d+) accumulation steps)?")
# "train.steps=900000": a field and its value, as stated in a description (not
# the examples of command-line overrides, "--override=train.x=1").
STATED_FIELD = re.compile(r"(?<![=\w.])(model|data|optimizer|train)\.(\w+)=([^\s,;()]+)")


def load(name):
    return ExperimentConfig.from_json(os.path.join(EXPERIMENTS, name))


def loadable(name):
    with open(os.path.join(EXPERIMENTS, name), encoding="utf-8") as f:
        task = json.load(f).get("task", "mlm")
    return SEQ2SEQ_SUPPORTED or task != "seq2seq"


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_and_says_how_to_run(name):
    if not loadable(name):
        with pytest.raises(ValueError, match="seq2seq"):
            load(name)
        return
    experiment = load(name)
    assert "Run:" in experiment.description or "python -m pretraining.train" in \
        experiment.description
    if experiment.data.train_dir.startswith("gs://"):  # kept as written, not resolved
        assert experiment.data.train_dir.startswith("gs://YOUR_BUCKET/")
    else:
        assert experiment.data.train_dir == os.path.join(os.getcwd(), "runs", "demo", "data",
                                                         "train")


@pytest.mark.parametrize("name", [n for n in RECIPES if loadable(n)])
def test_batch_arithmetic_divides_for_the_replica_counts_named(name):
    experiment = load(name)
    train = experiment.train
    stated = ARITHMETIC.findall(experiment.description)
    assert stated, f"{name}: the description states no 'N = R replicas × B sequences'"
    for total, replicas, per_replica, accumulation in stated:
        replicas, per_replica = int(replicas), int(per_replica)
        accumulation = int(accumulation or 1)
        assert int(total.replace(",", "")) == train.global_batch_size
        assert accumulation == train.gradient_accumulation_steps
        assert train.global_batch_size % (replicas * accumulation) == 0, (replicas, accumulation)
        assert replicas * per_replica * accumulation == train.global_batch_size


@pytest.mark.parametrize("name", [n for n in RECIPES if loadable(n)])
def test_fields_stated_in_the_description_match_the_json(name):
    experiment = load(name)
    stated = STATED_FIELD.findall(experiment.description)
    assert stated, f"{name}: the description states no section.field=value"
    for section, field, text in stated:
        text = text.rstrip(".")  # the end of a sentence
        value = getattr(getattr(experiment, section), field)
        if isinstance(value, bool):
            assert text == str(value).lower(), (section, field)
        elif isinstance(value, (int, float)):
            assert float(text) == pytest.approx(value), (section, field, text, value)
        elif (section, field) in PATH_FIELDS:  # read from the current directory: ./…
            assert text.startswith("./") or "://" in text, (section, field, text)
            assert resolve_path(text) == value, (section, field)
        else:
            assert text == value, (section, field)
    task = re.search(r"\btask=(\w+)", experiment.description)
    if task:
        assert task.group(1) == experiment.task


def test_phase_two_starts_from_phase_one():
    phase1, phase2 = load("bert_base_phase1_tpu.json"), load("bert_base_phase2_tpu.json")
    assert phase2.train.init_checkpoint == "gs://YOUR_BUCKET/runs/bert_base_phase1"
    assert "seq128" in phase1.data.train_dir and "seq512" in phase2.data.train_dir
    # Google's 90% / 10% split of 1M steps at batch 256.
    assert phase1.train.steps + phase2.train.steps == 1_000_000
    assert phase1.train.global_batch_size == phase2.train.global_batch_size == 256
    assert phase2.model.max_position_embeddings >= 512


def test_gpu_recipe_uses_lamb_with_accumulation():
    experiment = load("bert_base_8gpu_lamb.json")
    assert experiment.optimizer.name == "lamb"
    assert experiment.train.gradient_accumulation_steps > 1
    # NVIDIA's warmup proportion 0.2843 of 7038 steps.
    assert experiment.optimizer.warmup_steps == round(0.2843 * experiment.train.steps)


def test_seq2seq_recipe_uses_the_unilm_mask():
    with open(os.path.join(EXPERIMENTS, "unilm_seq2seq.json"), encoding="utf-8") as f:
        data = json.load(f)
    assert data["task"] == "seq2seq" and data["model"]["attention_mask_type"] == "unilm"
    assert "model-variants issue" in data["description"]


def test_smoke_recipe_reads_the_demo_data():
    experiment = load("smoke_cpu.json")
    demo = load("demo.json")
    assert experiment.data.train_dir == demo.data.train_dir
    assert experiment.model == demo.model
    assert experiment.train.steps <= 200
