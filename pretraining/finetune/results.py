"""What a fine-tuning run writes besides its checkpoints: `config.json` and
`labels.json` (the run's experiment and label list; a resume keeps both),
`eval_results.json` (every evaluation by step), the best checkpoint by the
dev metric (`best/`, with `best/best.json`) and `predictions.jsonl`."""

import contextlib
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from data_pipeline import labelled
from pretraining import run_config
from pretraining.metrics_log import write_json_atomic

PREDICTIONS = "predictions.jsonl"
TASKS_FILE = "tasks.json"
BEST_DIR = "best"
# Metrics where lower is better (the rest: higher).
LOWER_IS_BETTER = ("loss",)


def check_resume(model_dir: str, experiment, specs, overwrite: bool) -> None:
    """A run with a checkpoint resumes only with its model, task(s) and labels."""
    if overwrite or not run_config.has_checkpoint(model_dir):
        return
    path = os.path.join(model_dir, run_config.CONFIG_FILE)
    labels_path = os.path.join(model_dir, labelled.LABELS_FILE)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    new = json.loads(json.dumps(experiment.to_dict()))
    # (train.mixed_precision: mixed_float16 adds a loss scale to the optimizer's state.)
    changed = {k: v for k, v in run_config.differences(old, new).items()
               if k.split(".")[0] == "model"
               or k in ("finetune.task", "finetune.tasks", "train.mixed_precision")}
    if len(specs) == 1 and os.path.isfile(labels_path) \
            and labelled.LabelSpec.load(labels_path) != specs[0]:
        changed["labels"] = (list(labelled.LabelSpec.load(labels_path).labels),
                             list(specs[0].labels))
    if changed:
        name, (was, now) = next(iter(changed.items()))
        raise ValueError(f"model_dir={model_dir!r} was fine-tuned with {name}={was!r} "
                         f"(received {now!r}): a run keeps its model, task, labels and "
                         "precision. Use a new --model_dir, or --overwrite to start this one "
                         "again.")


def write_run_files(model_dir: str, experiment, specs, names) -> None:
    """`config.json` (the resolved experiment, model included) and
    `labels.json` (several tasks: `tasks.json`, each task's name, task and
    labels, in head order)."""
    write_json_atomic(os.path.join(model_dir, run_config.CONFIG_FILE), experiment.to_dict())
    if len(specs) == 1:
        specs[0].save(os.path.join(model_dir, labelled.LABELS_FILE))
        return
    write_json_atomic(os.path.join(model_dir, TASKS_FILE), [
        {"name": name, **spec.to_dict()} for name, spec in zip(names, specs)])


def append_eval_results(model_dir: str, step: int, result: dict, enabled: bool,
                        eval_file: str = "") -> None:
    """Adds (or replaces) the evaluation at `step` in `eval_results.json`, in
    `pretraining.evaluate`'s layout: `{"results": [{"step", "eval_file",
    "eval_<metric>": value, ...}]}`."""
    if not enabled:
        return
    from pretraining.evaluate import RESULTS_FILE, add_result
    entry = {"step": step, "eval_file": eval_file,
             **{f"eval_{k}": float(v) for k, v in result.items()}}
    add_result(os.path.join(model_dir, RESULTS_FILE), entry, write_json_atomic)


class BestCheckpoint:
    """The weights of the best evaluation by `metric`, in `best/`
    (`best/ckpt-<step>` + `best/best.json`: step, metric, value).

    Args:
        model_dir: str. Run directory. Required.
        metric: str. The dev metric (`finetune.select_by`). Required.
        enabled: bool. Whether this process writes (the chief). Defaults to True.
    """

    def __init__(self, model_dir: str, metric: str, enabled: bool = True):
        self.directory = os.path.join(model_dir, BEST_DIR)
        self.metric, self.enabled = metric, enabled
        self.step = self.value = None
        record = os.path.join(self.directory, "best.json")
        if os.path.isfile(record):
            with open(record, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("metric") == metric:
                self.step, self.value = data["step"], data["value"]

    def _better(self, value: float) -> bool:
        if self.value is None:
            return True
        if self.metric in LOWER_IS_BETTER:
            return value < self.value
        return value > self.value

    def update(self, step: int, result: dict, model) -> bool:
        """Keeps `model`'s weights when `result[metric]` beats the best so far."""
        if self.metric not in result:
            raise ValueError(f"finetune.select_by={self.metric!r} is not among the "
                             f"evaluation's metrics {sorted(result)}: pick one of them.")
        value = float(result[self.metric])
        if not np.isfinite(value) or not self._better(value):
            return False
        prefix = os.path.join(self.directory, f"ckpt-{step}")
        checkpoint = tf.train.Checkpoint(model=model)
        if self.enabled:
            tf.io.gfile.makedirs(self.directory)
            checkpoint.write(prefix)
            old = self.step
            write_json_atomic(os.path.join(self.directory, "best.json"),
                              {"step": step, "metric": self.metric, "value": value,
                               "checkpoint": os.path.basename(prefix)})
            if old is not None and old != step:
                for name in tf.io.gfile.glob(os.path.join(self.directory, f"ckpt-{old}.*")):
                    tf.io.gfile.remove(name)
        self.step, self.value = step, value
        logging.info("Best %s so far: %.4f at step %d (%s).", self.metric, value, step, prefix)
        return True

    @contextlib.contextmanager
    def weights_in(self, model):
        """Inside: `model` holds the best weights (when there are any);
        afterwards its own weights again."""
        prefix = os.path.join(self.directory, f"ckpt-{self.step}")
        if self.step is None or not tf.io.gfile.exists(prefix + ".index"):
            yield
            return
        saved = [v.numpy() for v in model.weights]
        tf.train.Checkpoint(model=model).read(prefix).expect_partial()
        try:
            yield
        finally:
            for v, value in zip(model.weights, saved):
                v.assign(value)


def write_predictions(model_dir: str, spec, logits: np.ndarray, texts=None,
                      enabled: bool = True, name: str | None = None) -> str:
    """`predictions.jsonl`: one line per test example, in order: `index`,
    `prediction` (a label name, a list of names, or a number) and the
    `scores` (logits) — plus the `text` when given."""
    path = os.path.join(model_dir, name or PREDICTIONS)
    if not enabled:
        return path
    lines = []
    for i, row in enumerate(np.asarray(logits, np.float64)):
        if spec.task == "single_label":
            prediction = spec.labels[int(np.argmax(row))]
        elif spec.task == "multi_label":
            prediction = [spec.labels[j] for j in np.flatnonzero(row > 0)]
        else:
            prediction = float(row[0])
        record = {"index": i, "prediction": prediction, "scores": [float(s) for s in row]}
        if texts is not None:
            record["text"] = texts[i]
        lines.append(json.dumps(record, ensure_ascii=False))
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))
    tf.io.gfile.rename(tmp, path, overwrite=True)
    logging.info("Wrote %d predictions to %s.", len(lines), path)
    return path
