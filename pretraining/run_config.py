"""A run directory's experiment across restarts: what a resume may change.

A run that has a checkpoint resumes only with the experiment it was trained
with, as recorded in its `config.json`:

- `model` and `task` never change: a checkpoint holds one model. Refused
  with the fields, the run's values and the values received.
- `GUARDED` fields (the length, the batch, the data order, the optimizer and
  its schedule) change what the remaining steps do: refused unless
  `--allow_changes` names them. The schedule is then rebuilt for the new
  values (a longer `train.steps` extends the decay to the new end) and the
  log states the learning rate at the resumed step under both plans.
- Every other field (cadences, `data.eval_dir`, `jit_compile`, …) may change;
  the changes are logged.

`config.json` is never overwritten silently: when the new experiment differs,
the previous file is kept as `config_history/config-step-<N>.json` (N, the
step the run resumed from). `--overwrite` deletes the old run's files (not
moved aside), and only once every check of the new run has passed and its
lock is taken.
"""

import json
import os

import tensorflow as tf
from absl import logging

from data_pipeline import input as data_input
from pretraining.config import ExperimentConfig
from pretraining.optimizer_config import OptimizerConfig

CONFIG_FILE = "config.json"
HISTORY_DIR = "config_history"
FIXED = ("model", "task")  # sections/fields a resumed run can never change
# `train.gradient_accumulation_steps` is not among them: with the global batch
# unchanged, another micro-batch split continues the same run (dropout is keyed
# on the global example), as another replica count does.
GUARDED = ("train.steps", "train.global_batch_size", "train.seed",
           "train.mixed_precision", "train.adversarial",
           "data.train_dir", "data.shuffle_buffer", "data.shard_by", "data.masked_lm_prob",
           *(f"optimizer.{name}" for name in OptimizerConfig.__dataclass_fields__))
# The fields whose change rebuilds the learning-rate schedule.
SCHEDULE = ("train.steps", "optimizer.learning_rate", "optimizer.warmup_steps",
            "optimizer.end_learning_rate", "optimizer.schedule", "optimizer.power",
            "optimizer.piecewise")


def check_model_dir(model_dir: str) -> None:
    """Refuses a `model_dir` that is an existing file."""
    if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
        raise ValueError(f"model_dir={model_dir!r} is an existing file, not a directory: "
                         "pass a directory (new or a run's).")


def check_allowed(allow_changes) -> tuple:
    """The `--allow_changes` names, each a `GUARDED` field; any other refused."""
    allowed = tuple(name.strip() for name in allow_changes if name.strip())
    unknown = [name for name in allowed if name not in GUARDED]
    if unknown:
        fixed = [n for n in unknown if n.split(".")[0] in FIXED]
        why = (f"{', '.join(fixed)}: the model and the task of a run never change (use a new "
               "--model_dir or --overwrite)" if fixed else
               f"allowed: {', '.join(GUARDED)}; other fields may change without it")
        raise ValueError(f"--allow_changes names {', '.join(unknown)}, which it cannot "
                         f"allow ({why}).")
    return allowed


def has_checkpoint(model_dir: str) -> bool:
    return bool(tf.io.gfile.glob(os.path.join(model_dir, "checkpoints", "ckpt-*")))


def read_config(model_dir: str) -> dict | None:
    """The run's `config.json` as a resolved experiment dict (None: no file)."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            data = json.loads(f.read())
        return ExperimentConfig.from_dict(data).to_dict()
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path} cannot be read as this run's experiment ({text}): restore "
                         "it, or pass --overwrite to start the run again.") from None


def differences(old: dict, new: dict) -> dict:
    """{"section.field": (old value, new value)} of two experiment dicts."""
    out = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) or isinstance(b, dict):
            for field in sorted(set(a or {}) | set(b or {})):
                if (a or {}).get(field) != (b or {}).get(field):
                    out[f"{key}.{field}"] = ((a or {}).get(field), (b or {}).get(field))
        elif a != b:
            out[key] = (a, b)
    return out


def _listing(changes: dict, names) -> str:
    return ", ".join(f"{name}={changes[name][0]!r} (received {changes[name][1]!r})"
                     for name in names)


def check_resume(experiment: ExperimentConfig, model_dir: str, manifest=None,
                 train_dir: str = "", allow_changes=(), overwrite: bool = False) -> dict:
    """Compares `experiment` with the run's `config.json` when the run has a
    checkpoint, and its train records' tokenizer with the run's
    `data_manifest.json`; returns the changes {"section.field": (old, new)}.

    Args:
        experiment: `ExperimentConfig`. The experiment to resume with. Required.
        model_dir: str. The run directory. Required.
        manifest: `data_pipeline.features.Manifest`. The train records' (read
            from `train_dir`). Defaults to None: not compared.
        train_dir: str. Where `manifest` was read. Defaults to "".
        allow_changes: sequence of str. `GUARDED` fields that may change.
            Defaults to ().
        overwrite: bool. The run is started again: nothing compared.
            Defaults to False.

    Raises:
        ValueError: records of another tokenizer, a changed model or task, or a guarded field that
            `allow_changes` does not name; the fields, the run's values and
            the values received.
    """
    allowed = check_allowed(allow_changes)
    if overwrite:
        return {}
    if manifest is not None:
        data_input.check_resume_tokenizer(os.path.join(model_dir, "data_manifest.json"),
                                          manifest, train_dir)
    if not has_checkpoint(model_dir):
        return {}
    old = read_config(model_dir)
    if old is None:
        return {}
    changes = differences(old, experiment.to_dict())
    fixed = [n for n in changes if n.split(".")[0] in FIXED]
    if fixed:
        raise ValueError(f"model_dir={model_dir!r} was trained with {_listing(changes, fixed)}: "
                         "a run keeps its model and task. Use a new --model_dir, or "
                         "--overwrite to start this one again.")
    refused = [n for n in changes if n in GUARDED and n not in allowed]
    if refused:
        raise ValueError(f"model_dir={model_dir!r} was trained with "
                         f"{_listing(changes, refused)}: resuming keeps the run's plan. Pass "
                         f"--allow_changes={','.join(refused)} to change it, or --overwrite "
                         "to start again.")
    for name, (a, b) in changes.items():
        logging.warning("Resuming with %s=%r (the run had %r)%s.", name, b, a,
                        " (allowed by --allow_changes)" if name in GUARDED else "")
    return changes


def log_schedule(changes: dict, experiment: ExperimentConfig, step: int | None) -> None:
    """States what a resume with a changed schedule does at the resumed step."""
    if step is None or not any(name in SCHEDULE for name in changes):
        return
    from pretraining.optimizers.factory import create_schedule

    old = json.loads(json.dumps(experiment.to_dict()))
    for name, (value, _) in changes.items():
        section, field = name.split(".", 1) if "." in name else (None, name)
        if section in old:
            old[section][field] = value
    old_steps = old["train"]["steps"]
    old_lr = float(create_schedule(OptimizerConfig.from_dict(old["optimizer"]), old_steps)(step))
    new_lr = float(create_schedule(experiment.optimizer, experiment.train.steps)(step))
    logging.warning("The learning-rate schedule is rebuilt for the new plan (it ends at step "
                    "%d; the run's plan ended at %d): at step %d the learning rate is %.6g "
                    "(the run's plan: %.6g).", experiment.train.steps, old_steps, step, new_lr,
                    old_lr)


def keep_history(model_dir: str, new: dict, step: int) -> None:
    """Keeps the run's `config.json` as `config_history/config-step-<step>.json`
    when `new` differs from it (before it is replaced)."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return
    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    try:
        if json.loads(text) == json.loads(json.dumps(new)):
            return
    except json.JSONDecodeError:
        pass  # kept as it is
    history = os.path.join(model_dir, HISTORY_DIR)
    tf.io.gfile.makedirs(history)
    target, n = os.path.join(history, f"config-step-{step}.json"), 1
    while tf.io.gfile.exists(target):
        n += 1
        target = os.path.join(history, f"config-step-{step}-{n}.json")
    tf.io.gfile.copy(path, target)
    logging.info("The run's previous %s is kept as %s.", CONFIG_FILE, target)


def clear(model_dir: str, keep=(".lock",)) -> None:
    """`--overwrite`: deletes everything in the run directory but `keep` (the
    lock this trainer holds; taking it refused a live trainer's run)."""
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(model_dir) if n.rstrip("/") not in keep]
    if names:
        logging.warning("--overwrite: deleting the previous run in %s (%s).", model_dir,
                        ", ".join(sorted(names)))
    for name in names:
        path = os.path.join(model_dir, name)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
