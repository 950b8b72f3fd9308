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
    results = json.load(open(os.path.join(model_dir, "eval_results.json")))["results"]
    assert [r["step"] for r in results] == [30, 60]
    assert set(results[1]) >= {"eval_accuracy", "eval_macro_f1", "eval_mcc", "eval_loss"}
    assert results[1]["eval_accuracy"] == summary["eval_accuracy"]
    best = json.load(open(os.path.join(model_dir, "best", "best.json")))
    assert best["value"] == max(r["eval_accuracy"] for r in results)
    assert summary["best_step"] == best["step"]
    assert json.load(open(os.path.join(model_dir, "labels.json"))) == {
        "task": "single_label", "labels": ["cool", "warm"]}
    lines = [json.loads(x) for x in open(os.path.join(model_dir, "predictions.jsonl"))]
    expected = [name for _, name in _rows(8, 2)]
    assert [x["prediction"] for x in lines] == expected


def _jsonl_rows(n, seed):
    """Sentences of one colour family and fillers: labels a list field (one
    family), value the warm share of the coloured words. (Rows with both
    families, an AND of two word sets, take the 2-layer, 32-wide model far
    more than 60 steps.)"""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        warm, cool = [(3, 0), (0, 3)][rng.integers(2)]
        words = list(rng.choice(WARM, warm)) + list(rng.choice(COOL, cool)) + list(
            rng.choice(FILLER, 3))
        rng.shuffle(words)
        rows.append({"sentence": " ".join(words), "value": float(warm / (warm + cool)),
                     "families": ["warm"] * (warm > 1) + ["cool"] * (cool > 1)})
    return rows


# Baselines: one label set is right on about half of the rows (exact match
# 0.5); a constant value has no correlation.
@pytest.mark.parametrize("task,extra,metric,least", [
    ("multi_label", ["finetune.label_field=families",
                     'finetune.adversarial={"method": "fgm", "epsilon": 0.05}'], "exact_match", 0.9),
    pytest.param("regression", ["finetune.label_field=value"], "pearson", 0.8,
                 marks=pytest.mark.extended),  # (MSE: also trained by the multi-task test)
], ids=["multi_label_zlpr_fgm", "regression"])
def test_multi_label_and_regression_learn(colours, tmp_path, task, extra, metric, least):
    for split, (n, seed) in {"train": (256, 3), "dev": (64, 4)}.items():
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in _jsonl_rows(n, seed))
    experiment = _experiment(
        colours, f"finetune.task={task}", f"finetune.train_file={tmp_path / 'train.jsonl'}",
        f"finetune.eval_file={tmp_path / 'dev.jsonl'}", *extra)
    summary = finetune_cli.run(experiment, str(tmp_path / "run"))
    assert summary[f"eval_{metric}"] >= least, summary
    assert summary["best_metric"] == ("micro_f1" if task == "multi_label" else metric)


# ------------------------------------------------------------------ --init
def _batch(vocab_size=128, seq=12, seed=3):
    rng = np.random.default_rng(seed)
    mask = np.ones((2, seq), "int32")
    mask[1, 7:] = 0
    segments = np.zeros((2, seq), "int32")
    segments[:, seq // 2:] = 1
    return {"input_ids": rng.integers(5, vocab_size, (2, seq)).astype("int32") * mask,
            "input_mask": mask, "segment_ids": segments * mask}


def _trainer_from_init(init_path, model_dir, *extra):
    """A fine-tuning trainer built as the CLI builds it, from `--init`."""
    from data_pipeline.labelled import LabelSpec
    from pretraining.finetune import prepare
    from pretraining.finetune.trainer import FinetuneTrainer, TaskData
    experiment = FinetuneExperiment.from_dict(
        {"finetune": {"train_file": "unused.tsv", "init": init_path, "max_seq_length": 16}},
        overrides=["train.global_batch_size=2", *extra])
    experiment, init = prepare.resolve_model(experiment)
    batch = _batch(experiment.model.vocab_size, 16)
    arrays = {**batch, "label": np.array([0, 1], "int32")}
    task = TaskData("t", LabelSpec("single_label", ("a", "b")), arrays)
    return FinetuneTrainer(experiment, str(model_dir), task, init=init)


def _encoder_output(trainer, batch):
    return np.asarray(trainer.model.encoder(batch)["sequence_output"])


def test_init_from_our_run_gives_its_encoder_outputs(tmp_path, repo_root):
    import tensorflow as tf
    from pretraining.config import BertConfig
    from pretraining.formats.bundle import build_model
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    pretrainer = build_model(config, head=True)
    rng = np.random.default_rng(0)
    for v in pretrainer.weights:
        v.assign(rng.normal(0, 0.1, v.shape).astype("float32") + (
            1.0 if v.path.endswith("gamma") else 0.0))
    run = tmp_path / "pretrain_run"
    tf.train.CheckpointManager(tf.train.Checkpoint(model=pretrainer), str(run / "checkpoints"),
                               max_to_keep=1, checkpoint_name="ckpt").save(7)
    (run / "config.json").write_text(json.dumps({"model": config.to_dict(), "task": "mlm"}))
    _vocab(str(run))
    trainer = _trainer_from_init(str(run), tmp_path / "ft")
    try:
        assert trainer.experiment.model == config
        batch = _batch()
        expected = np.asarray(pretrainer.encoder(batch)["sequence_output"])
        np.testing.assert_allclose(_encoder_output(trainer, batch), expected, atol=1e-6)
    finally:
        trainer.close()
    scratch = _trainer_from_init(str(run), tmp_path / "scratch", "finetune.from_scratch=true")
    try:  # the run's config, random weights
        assert scratch.experiment.model == config
        assert np.abs(_encoder_output(scratch, _batch()) - expected).max() > 0.1
    finally:
        scratch.close()


def test_init_from_google_checkpoint_matches_numpy_bert(tmp_path, repo_root):
    from pretraining.config import BertConfig
    from tests.pretraining import numpy_bert
    from tests.pretraining.test_convert import _write_google_checkpoint
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    g = _write_google_checkpoint(str(tmp_path / "google"), config)
    _vocab(str(tmp_path / "google"))
    trainer = _trainer_from_init(str(tmp_path / "google"), tmp_path / "ft")
    try:
        batch = _batch()
        expected = numpy_bert.google_sequence_output(g, batch, config.num_hidden_layers,
                                                     config.num_attention_heads)
        valid = batch["input_mask"].astype(bool)
        np.testing.assert_allclose(_encoder_output(trainer, batch)[valid], expected[valid],
                                   rtol=1e-5, atol=1e-5)
    finally:
        trainer.close()


@pytest.mark.hf  # torch + transformers (make test-hf)
def test_init_from_hugging_face_directory_matches_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(
        vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(str(tmp_path / "hf"))
    _vocab(str(tmp_path / "hf"))
    trainer = _trainer_from_init(str(tmp_path / "hf"), tmp_path / "ft")
    try:
        batch = _batch()
        with torch.no_grad():
            expected = hf(input_ids=torch.tensor(batch["input_ids"], dtype=torch.long),
                          attention_mask=torch.tensor(batch["input_mask"], dtype=torch.long),
                          token_type_ids=torch.tensor(batch["segment_ids"], dtype=torch.long),
                          ).last_hidden_state.numpy()
        valid = batch["input_mask"].astype(bool)
        np.testing.assert_allclose(_encoder_output(trainer, batch)[valid], expected[valid],
                                   rtol=1e-4, atol=1e-4)
    finally:
        trainer.close()


# ------------------------------------------------------------------ bad input
def test_init_without_an_encoder_is_one_line_exit_2(colours, tmp_path, capsys):
    from pretraining import cli
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    experiment = FinetuneExperiment.from_dict({"finetune": {}}, overrides=[
        f"finetune.train_file={colours['train']}", f"finetune.init={tmp_path / 'empty'}"])
    with pytest.raises(SystemExit) as refused:
        cli.run_or_exit(finetune_cli.run, experiment, str(tmp_path / "ft"))
    err = capsys.readouterr().err.strip()
    assert refused.value.code == 2 and "\n" not in err and "Traceback" not in err, err
    assert f"--init='{tmp_path / 'empty'}' holds no BERT encoder" in err, err
    assert not os.path.exists(tmp_path / "ft")


def test_max_seq_length_above_the_positions_is_refused(colours, tmp_path):
    experiment = _experiment(colours, "finetune.max_seq_length=65")
    with pytest.raises(ValueError, match=r"max_seq_length=65 is above the model's "
                                         r"max_position_embeddings=64.*--max_seq_length=64"):
        finetune_cli.run(experiment, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


# ------------------------------------------------------------------ resume
def _weights(model_dir):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith("model/")]
    return {n: reader.get_tensor(n) for n in names}


def _assert_same_weights(a_dir, b_dir):
    expected, got = _weights(a_dir), _weights(b_dir)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.slow
def test_stopped_and_resumed_run_is_bit_identical(colours, tmp_path):
    """Dropout on (encoder and classifier): data position and RNG restored."""
    from pretraining.finetune import prepare
    from pretraining.finetune.trainer import FinetuneTrainer
    experiment = _experiment(colours, "model.hidden_dropout_prob=0.1", "train.eval_every=0",
                             steps=12)
    straight_dir, stopped_dir = str(tmp_path / "straight"), str(tmp_path / "stopped")
    finetune_cli.run(experiment, straight_dir)
    prepared = prepare.prepare(experiment, stopped_dir)
    trainer = FinetuneTrainer(prepared.experiment, stopped_dir, prepared.task)
    try:
        assert trainer.train(stop_at=5)["step"] == 5
    finally:
        trainer.close()
    summary = finetune_cli.run(experiment, stopped_dir)
    assert summary["step"] == 12
    _assert_same_weights(straight_dir, stopped_dir)


def _cli(experiment_file, model_dir, *flags):
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=repo)
    return subprocess.Popen(
        [sys.executable, "-m", "pretraining.finetune", f"--experiment={experiment_file}",
         f"--model_dir={model_dir}", *flags], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(model_dir, proc, newer_than=-1, timeout=180):
    import time
    from pretraining import checkpoints
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        found = checkpoints.list_checkpoints(os.path.join(model_dir, "checkpoints"))
        if found and found[0][0] > newer_than:
            return found[0][0]
        time.sleep(0.05)
    return None


@pytest.mark.slow
@pytest.mark.extended  # ~3 minutes; the in-process resume above runs by default
def test_sigkill_then_sigterm_then_resume_is_bit_identical(colours, tmp_path):
    """kill -9 mid-run, a resume stopped by SIGTERM (exit 75 after its
    checkpoint), a second resume to the end: the same weights as a run
    never interrupted."""
    import signal
    from pretraining import checkpoints, preemption
    experiment = _experiment(colours, "model.hidden_dropout_prob=0.1", "train.steps_per_loop=2",
                             "train.checkpoint_every=4", steps=200)
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(experiment.to_dict() | {"model": "bert_test"}))
    straight_dir, killed_dir = str(tmp_path / "straight"), str(tmp_path / "killed")
    straight, killed = _cli(str(path), straight_dir), _cli(str(path), killed_dir)
    try:
        assert _wait_for_checkpoint(killed_dir, killed) is not None
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=60) == -signal.SIGKILL
        step = checkpoints.list_checkpoints(os.path.join(killed_dir, "checkpoints"))[0][0]
        stopped = _cli(str(path), killed_dir)
        assert _wait_for_checkpoint(killed_dir, stopped, newer_than=step) is not None
        stopped.send_signal(signal.SIGTERM)
        _, stderr = stopped.communicate(timeout=120)
        assert stopped.returncode == preemption.EXIT_PREEMPTED, stderr[-2000:]
        assert "SIGTERM received: checkpoint saved at step" in stderr
        assert "Traceback" not in stderr
        assert straight.wait(timeout=300) == 0
    finally:
        straight.kill()
        killed.kill()
    resumed = _cli(str(path), killed_dir)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "Resumed from" in stderr, stderr[-2000:]
    _assert_same_weights(straight_dir, killed_dir)


@pytest.mark.slow
@pytest.mark.extended  # ~1 min on a busy machine; FGM's mirrored equality: test_adversarial
def test_mirrored_two_replicas_equal_one_device(colours, tmp_path, mirrored):
    """Each replica's rows of the global batch, the loss over the global
    batch, all-reduce then clip: the weights of one device (1e-5 relative),
    and the same dev logits gathered across replicas."""
    from pretraining.finetune import prepare
    from pretraining.finetune.trainer import FinetuneTrainer
    experiment = _experiment(colours, "model.hidden_dropout_prob=0.0",
                             "finetune.classifier_dropout=0.0", "train.eval_every=0", steps=8)
    runs = {}
    for name, strategy in (("one", None), ("mirrored", mirrored)):
        model_dir = str(tmp_path / name)
        prepared = prepare.prepare(experiment, model_dir)
        trainer = FinetuneTrainer(prepared.experiment, model_dir, prepared.task, strategy)
        try:
            summary = trainer.train()
            runs[name] = (summary, trainer.outputs(prepared.task.eval))
        finally:
            trainer.close()
    one, two = _weights(str(tmp_path / "one")), _weights(str(tmp_path / "mirrored"))
    assert one.keys() == two.keys()
    for name in one:
        scale = max(np.abs(one[name]).max(), 1e-6)
        np.testing.assert_allclose(two[name] / scale, one[name] / scale, atol=1e-5,
                                   err_msg=name)
    np.testing.assert_allclose(runs["mirrored"][1], runs["one"][1], atol=1e-4)
    assert runs["mirrored"][0]["eval_examples"] == runs["one"][0]["eval_examples"] == 64


# ------------------------------------------------------------------ multi-task
def test_multi_task_starts_as_the_encoder_then_tasks_diverge(colours, tmp_path, repo_root):
    """Two tasks on one encoder from a Google checkpoint: the task id is the
    Conditional LayerNorm condition, zero-initialised, so at step 0 both
    tasks get the checkpoint's encoder outputs (NumPy BERT, 1e-5); after
    training they differ. Eval reports each task's metric and their mean."""
    from pretraining.config import BertConfig
    from pretraining.finetune import prepare
    from pretraining.finetune.trainer import FinetuneTrainer
    from tests.pretraining import numpy_bert
    from tests.pretraining.test_convert import _write_google_checkpoint
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json")
    g = _write_google_checkpoint(str(tmp_path / "google"), config)
    with open(tmp_path / "values.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in _jsonl_rows(128, 5))
    tasks = [{"name": "family", "train_file": colours["train"], "eval_file": colours["eval"]},
             {"name": "share", "task": "regression", "train_file": str(tmp_path / "values.jsonl"),
              "eval_file": str(tmp_path / "values.jsonl"), "label_field": "value"}]
    experiment = FinetuneExperiment.from_dict({"finetune": {
        "tasks": tasks, "init": str(tmp_path / "google"), "tokenizer": colours["vocab"],
        "text_field": "sentence", "max_seq_length": 16}}, overrides=[
        "optimizer.learning_rate=0.003", "train.steps=20", "train.global_batch_size=16",
        "train.steps_per_loop=10", "train.checkpoint_every=20"])
    model_dir = str(tmp_path / "multi")
    prepared = prepare.prepare(experiment, model_dir)
    assert prepared.experiment.model.condition_num_classes == 2
    trainer = FinetuneTrainer(prepared.experiment, model_dir, prepared.task,
                              init=prepared.init)
    batch = _batch()
    valid = batch["input_mask"].astype(bool)
    expected = numpy_bert.google_sequence_output(g, batch, config.num_hidden_layers,
                                                 config.num_attention_heads)

    def sequence(task_id):
        condition = np.full((2, 1), task_id, "int32")
        return np.asarray(trainer.model.encoder({**batch, "condition": condition})[
            "sequence_output"])

    try:
        for task_id in (0, 1):
            np.testing.assert_allclose(sequence(task_id)[valid], expected[valid], rtol=1e-5,
                                       atol=1e-5)
        summary = trainer.train()
    finally:
        trainer.close()
    assert np.abs(sequence(0) - sequence(1))[valid].max() > 1e-3
    assert {"eval_family/accuracy", "eval_share/pearson", "eval_mean"} <= set(summary)
    assert summary["eval_mean"] == pytest.approx(
        (summary["eval_family/accuracy"] + summary["eval_share/pearson"]) / 2)
    names = [t["name"] for t in json.load(open(os.path.join(model_dir, "tasks.json")))]
    assert names == ["family", "share"]
