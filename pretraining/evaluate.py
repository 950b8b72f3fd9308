"""Evaluate a checkpoint of a run without training:
`python -m pretraining.evaluate --model_dir=RUN [--eval_dir=DIR] [--step=N]
[--eval_condition=shuffled]`.

Reads the run's `config.json` and `data_manifest.json`, restores the newest
checkpoint (or `ckpt-N` with `--step=N`), with the EMA averages when the run
kept them (as the trainer's evaluations do), and evaluates it on `--eval_dir`
(default: the run's `data.eval_dir`): records of the run's tokenizer, task
and NSP setting. The figures are the trainer's (`eval_loss`,
`eval_masked_lm_accuracy` or `eval_accuracy`, `eval_perplexity`, NSP ones)
and are written to `RUN/eval_results.json` (one entry per checkpoint step and
eval directory; evaluating the same pair again replaces its entry) and
printed as one JSON line. A conditioned run's `--eval_condition=shuffled`
evaluates with every condition replaced by another (its own entry). Takes no lock and writes nothing else: it can run
beside the trainer. Exit status 2 with one line for a user error.
"""

import dataclasses
import json
import os
import re

from absl import flags, logging

from pretraining import cli

RESULTS_FILE = "eval_results.json"


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_string("model_dir", None, "Run directory written by pretraining.train.",
                        required=True)
    flags.DEFINE_string("eval_dir", "", "Eval records (a split directory of data_pipeline."
                        "build). Default: the run's data.eval_dir.")
    flags.DEFINE_integer("step", 0, "Checkpoint step (ckpt-N). 0: the newest.", lower_bound=0)
    flags.DEFINE_integer("eval_steps", -1, "Batches to evaluate; 0: the whole split. "
                         "Default (-1): the run's train.eval_steps.", lower_bound=-1)
    flags.DEFINE_enum("eval_condition", "true", ["true", "shuffled"], "Conditioned runs: "
                      "evaluate with each example's own condition, or with another one "
                      "(class c -> (c+1) mod K; vectors rolled by one row) to see that the "
                      "model uses it.")


def find_checkpoint(model_dir: str, step: int) -> str:
    """The prefix of `ckpt-<step>` (the newest when `step` is 0)."""
    from pretraining import checkpoints

    directory = os.path.join(model_dir, "checkpoints")
    listed = checkpoints.list_checkpoints(directory)
    if not step:
        return checkpoints.find_prefix(model_dir, "--model_dir")
    for number, prefix in listed:
        if number == step:
            return prefix
    steps = sorted(n for n, _ in listed)
    raise ValueError(f"--step={step}: {directory} has no ckpt-{step} (its checkpoints: "
                     f"{', '.join(map(str, steps)) or 'none'}).")


def _read_run(model_dir: str):
    """(experiment, the run's train manifest, the path of that manifest)."""
    import tensorflow as tf
    from data_pipeline import features
    from pretraining import run_config
    from pretraining.config import ExperimentConfig

    data = run_config.read_config(model_dir)
    if data is None:
        raise ValueError(f"--model_dir={model_dir!r} has no {run_config.CONFIG_FILE}: give the "
                         "directory that pretraining.train wrote.")
    experiment = ExperimentConfig.from_dict(data)
    path = os.path.join(model_dir, "data_manifest.json")
    if not tf.io.gfile.exists(path):
        raise ValueError(f"--model_dir={model_dir!r} has no data_manifest.json: give the "
                         "directory that pretraining.train wrote.")
    try:
        with tf.io.gfile.GFile(path) as f:
            values = json.loads(f.read())
        names = {field.name for field in dataclasses.fields(features.Manifest)}
        manifest = features.Manifest(**{k: v for k, v in values.items() if k in names})
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path} cannot be read as a manifest ({e}).") from None
    return experiment, manifest, path


def evaluate(model_dir: str, eval_dir: str = "", step: int = 0, eval_steps: int = -1,
             eval_condition: str = "true") -> dict:
    """Evaluates checkpoint `step` (0: the newest) of the run in `model_dir`
    on `eval_dir` (the run's `data.eval_dir` when empty); writes and returns
    the result: `step`, `checkpoint`, `eval_dir` and the `eval_*` figures
    (and `eval_condition` when "shuffled": every condition replaced by
    another, `conditioning.shuffled`)."""
    import numpy as np
    import tensorflow as tf
    from data_pipeline import input as data_input
    from pretraining import checkpoints, conditioning, losses, progress
    from pretraining.config import resolve_path
    from pretraining.data_checks import (DATA_ERRORS, check_data, check_eval_matches,
                                         raise_data_error)
    from pretraining.metrics_log import write_json_atomic
    from pretraining.model import BertEncoder
    from pretraining.pretrainer import BertPretrainer

    if not tf.io.gfile.isdir(model_dir):
        raise ValueError(f"--model_dir={model_dir!r} is not a directory: give a run "
                         "directory written by pretraining.train.")
    experiment, run_manifest, manifest_path = _read_run(model_dir)
    conditioning.check_eval_condition(eval_condition, experiment.model)
    eval_dir = resolve_path(eval_dir) if eval_dir else experiment.data.eval_dir
    if not eval_dir:
        raise ValueError(f"--eval_dir is needed: the run in {model_dir} has no data.eval_dir.")
    manifest = check_data(experiment, eval_dir, "eval")
    check_eval_matches(run_manifest, manifest_path, manifest, eval_dir)
    prefix = find_checkpoint(model_dir, step)
    next_sentence = experiment.task == "mlm" and run_manifest.next_sentence
    policy = experiment.train.mixed_precision
    model = BertPretrainer(BertEncoder(experiment.model, dtype=policy), experiment.task,
                           next_sentence, dtype=policy)
    checkpoints.restore_weights(prefix, model, ("encoder", "masked_lm") + (
        ("nsp",) if next_sentence else ()), config_source=os.path.join(model_dir, "config.json"))
    if experiment.optimizer.ema_decay:
        checkpoints.swap_in_ema(prefix, model)
    keys = ("loss_sum", "correct", "weight") + (
        ("nsp_loss_sum", "nsp_correct", "nsp_count") if next_sentence else ())

    @tf.function
    def eval_step(batch):
        if eval_condition == "shuffled":
            batch = conditioning.shuffled(batch, experiment.model)
        sums = losses.task_sums(experiment.task, model(batch, training=False), batch)
        return tf.stack([sums[k] for k in keys])

    limit = experiment.train.eval_steps if eval_steps < 0 else eval_steps
    batches = iter(data_input.make_dataset(eval_dir, experiment.train.global_batch_size,
                                           training=False, seed=experiment.train.seed))
    totals, count = np.zeros(len(keys)), 0
    while not (limit and count >= limit):
        try:
            batch = next(batches)
        except StopIteration:
            break
        except DATA_ERRORS as e:
            raise_data_error(eval_dir, e)
        totals += eval_step(batch).numpy()
        count += 1
    figures = progress.metrics(dict(zip(keys, totals)), experiment.task)
    figures["predictions"] = int(totals[keys.index("weight")])
    match = re.search(r"ckpt-(\d+)$", prefix)
    result = {"step": int(match.group(1)) if match else None, "checkpoint": prefix,
              "eval_dir": eval_dir, "batches": count,
              **{f"eval_{k}": float(v) for k, v in figures.items()}}
    if eval_condition != "true":
        result["eval_condition"] = eval_condition
    result["eval_predictions"] = int(result["eval_predictions"])
    logging.info("Eval of %s on %s: %s", prefix, eval_dir, progress.format_metrics(figures))
    add_result(os.path.join(model_dir, RESULTS_FILE), result, write_json_atomic)
    return result


def add_result(path: str, result: dict, write_json_atomic) -> None:
    """Adds `result` to the list in `path`, replacing an entry of the same
    step and eval directory (also fine-tuning's evaluations)."""
    import tensorflow as tf

    entries = []
    if tf.io.gfile.exists(path):
        try:
            with tf.io.gfile.GFile(path) as f:
                entries = json.loads(f.read()).get("results", [])
        except (json.JSONDecodeError, AttributeError):
            raise ValueError(f"{path} is not an eval_results.json written by "
                             "pretraining.evaluate: move it away and run again.") from None
    key = lambda e: (e.get("step"), e.get("eval_dir"), e.get("eval_condition"))  # noqa: E731
    entries = [e for e in entries if key(e) != key(result)] + [result]
    entries.sort(key=lambda e: (e.get("step") or 0, e.get("eval_dir", "")))
    write_json_atomic(path, {"results": entries})


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]} (every setting is a --flag).")
    f = flags.FLAGS
    print(cli.to_json(evaluate(f.model_dir, f.eval_dir, f.step, f.eval_steps,
                               f.eval_condition)))


if __name__ == "__main__":
    cli.run(main, define_flags)  # bad flags, run or records: one line, exit 2
