"""What pretraining is worth on the built-in sample: `python -m pretraining.demo
--finetune` (or `python -m pretraining.demo_finetune`).

After the demo's pretraining (`RUN_DIR/model`, resumed or made first), a
labelled task is made from the same sample (`data_pipeline.sample_task`:
which top-level standard-library package a docstring paragraph comes from,
split by module) and the `demo` fine-tuning experiment runs twice: from the
pretrained checkpoint and, with `--from_scratch`'s meaning, from random
weights of the same model. Both held-out accuracies are printed next to the
majority-class baseline and written to `RUN_DIR/finetune/summary.json`.
Running it again resumes (finished runs are only evaluated); `--overwrite`
starts the fine-tuning runs again (the pretraining is kept).
`python -m pretraining.demo_finetune --finetune_train_fraction=0.1` trains
on a seeded 10% of each package's training paragraphs (the held-out split
is the same), the low-data regime.
"""

import os
import shutil
import sys
import time

from absl import flags, logging

from pretraining import cli

FINETUNE_DIR = "finetune"
EXPERIMENT = "demo"  # pretraining/configs/finetune/demo.json
NUM_CLASSES = 8
TRAIN_FRACTION = 1.0  # of each label's training paragraphs (`sample_task.subsample`)
RUNS = (("pretrained", False), ("scratch", True))


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_string("run_dir", "runs/demo", "The demo's run directory (pretrained there "
                        "first when it has no checkpoint).")
    flags.DEFINE_bool("overwrite", False, "Delete RUN_DIR/finetune first (the pretraining "
                      "is kept).")
    flags.DEFINE_string("finetune_experiment", EXPERIMENT, "The fine-tuning experiment: a "
                        "JSON file or a shipped name.")
    flags.DEFINE_multi_string("finetune_override", [], "section.field=value for both "
                              "fine-tuning runs, e.g. train.steps=100.")
    flags.DEFINE_float("finetune_train_fraction", TRAIN_FRACTION, "Train on this seeded "
                       "share of each package's training paragraphs, in (0, 1] (the "
                       "held-out split is the same). With a finished run, add --overwrite.")
    cli.define_experiment_flags("demo")


def finetune_one(model_dir: str, init: str, tokenizer: str, task, from_scratch: bool,
                 experiment_path: str = EXPERIMENT, overrides=()) -> dict:
    """One fine-tuning run of the sample task; returns its summary."""
    from pretraining.finetune import __main__ as finetune_cli
    from pretraining.finetune.config import FinetuneExperiment
    overrides = [f"finetune.init={init}", f"finetune.tokenizer={tokenizer}",
                 f"finetune.train_file={task.train_path}",
                 f"finetune.eval_file={task.eval_path}",
                 f"finetune.from_scratch={'true' if from_scratch else 'false'}", *overrides]
    experiment = FinetuneExperiment.from_json(experiment_path, overrides=overrides)
    start = time.time()
    summary = finetune_cli.run(experiment, model_dir)
    return {**summary, "wall_seconds": time.time() - start}


def run(run_dir: str, overwrite: bool = False, experiment_path: str = EXPERIMENT,
        overrides=(), pretrain=None, train_fraction: float = TRAIN_FRACTION) -> dict:
    """Fine-tunes the demo checkpoint of `run_dir` and the same model from
    random weights on the sample task.

    Args:
        run_dir: str. The demo's run directory. Required.
        overwrite: bool. Start the fine-tuning runs again. Defaults to False.
        experiment_path: str. The fine-tuning experiment. Defaults to "demo".
        overrides: list of str. `section.field=value` for both runs.
            Defaults to `()`.
        pretrain: callable or None. Called first (the demo's pretraining,
            which resumes a finished run at once); returns its summary.
            Defaults to None.
        train_fraction: float. The share of each label's training
            paragraphs used, in (0, 1]. Defaults to `TRAIN_FRACTION`.

    Returns:
        The summary dict (also in `RUN_DIR/finetune/summary.json`).
    """
    from data_pipeline import sample_task
    from pretraining.metrics_log import write_json_atomic
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"--finetune_train_fraction must be in (0, 1]. Received: "
                         f"{train_fraction}")
    start = time.time()
    run_dir = os.path.abspath(run_dir)
    if not overwrite:  # Before the pretraining: a refusal should not wait for it.
        check_same_fraction(os.path.join(run_dir, FINETUNE_DIR, "data",
                                         sample_task.TASK_FILE), train_fraction)
    pretraining = pretrain() if pretrain is not None else None
    init = os.path.join(run_dir, "model")
    tokenizer = os.path.join(run_dir, "data", "spm.model")
    if not os.path.isdir(os.path.join(init, "checkpoints")) or not os.path.isfile(tokenizer):
        raise ValueError(f"No pretrained demo in {run_dir} (model/checkpoints and "
                         "data/spm.model): run python -m pretraining.demo "
                         f"--run_dir={run_dir} first.")
    root = os.path.join(run_dir, FINETUNE_DIR)
    if overwrite and os.path.exists(root):
        logging.info("--overwrite: deleting %s", root)
        shutil.rmtree(root)
    task = sample_task.write_sample_task(os.path.join(root, "data"), num_classes=NUM_CLASSES,
                                         train_fraction=train_fraction)
    logging.info("Sample task: %d train, %d eval examples, labels %s; majority class %s "
                 "(%.1f%% of eval).", task.train_examples, task.eval_examples, task.labels,
                 task.majority_label, 100 * task.majority_accuracy)
    summary = {"run_dir": run_dir, "labels": task.labels,
               "pretraining_eval_masked_lm_accuracy": (pretraining or {}).get(
                   "eval_masked_lm_accuracy"),
               "train_fraction": train_fraction,
               "train_examples": task.train_examples, "eval_examples": task.eval_examples,
               "majority_label": task.majority_label,
               "majority_accuracy": task.majority_accuracy}
    for name, from_scratch in RUNS:
        result = finetune_one(os.path.join(root, name), init, tokenizer, task, from_scratch,
                              experiment_path, overrides)
        summary[name] = {k: result[k] for k in (
            "step", "eval_accuracy", "eval_macro_f1", "eval_mcc", "eval_loss", "wall_seconds")
            if k in result}
        summary[f"{name}_accuracy"] = result.get("eval_accuracy")
    summary["wall_seconds"] = time.time() - start
    write_json_atomic(os.path.join(root, "summary.json"), summary)
    return summary


def check_same_fraction(task_file: str, train_fraction: float) -> None:
    """Refuses to resume fine-tuning runs made on another share of the train
    split (their figures would be reported for this one)."""
    import json
    if not os.path.isfile(task_file):
        return
    with open(task_file, encoding="utf-8") as f:
        before = json.load(f).get("train_fraction", 1.0)
    if before != train_fraction:
        raise ValueError(f"{task_file}: the fine-tuning runs here trained on "
                         f"train_fraction={before}, not --finetune_train_fraction="
                         f"{train_fraction}: add --overwrite to start them again, or pass "
                         f"--finetune_train_fraction={before}.")


def describe(summary: dict) -> str:
    """The result as the demo prints it."""
    root = os.path.join(summary["run_dir"], FINETUNE_DIR)
    rel = os.path.relpath(root)
    rel = root if rel.startswith("..") else rel
    rows = [("fine-tuned from the demo checkpoint", summary["pretrained"]),
            ("same model from random weights", summary["scratch"])]
    fraction = summary.get("train_fraction", 1.0)
    share = f" ({fraction:.0%} of the labelled ones)" if fraction < 1.0 else ""
    lines = ["", "Fine-tuning demo finished: which stdlib package a docstring paragraph "
             f"comes from ({len(summary['labels'])} packages, {summary['train_examples']} "
             f"train{share} / {summary['eval_examples']} held-out paragraphs, split by "
             "module).", ""]
    lines.append(f"  {'held-out accuracy':38s} {'acc.':>6s}  {'macro-F1':>8s}  {'time':>6s}")
    for label, result in rows:
        lines.append(f"  {label:38s} {result['eval_accuracy']:6.1%}  "
                     f"{result['eval_macro_f1']:8.3f}  {result['wall_seconds']:5.0f}s")
    lines.append(f"  {'majority class (' + summary['majority_label'] + ')':38s} "
                 f"{summary['majority_accuracy']:6.1%}")
    gain = summary["pretrained"]["eval_accuracy"] - summary["scratch"]["eval_accuracy"]
    lines += ["", f"  pretraining's gain here: {100 * gain:+.1f} points of held-out accuracy "
              "(docs/finetuning.md: what was measured and why)."]
    pretrained_dir = os.path.join(rel, "pretrained")
    lines += ["", f"  figures     {os.path.join(rel, 'summary.json')}",
              f"  export      python -m pretraining.convert --input={pretrained_dir}"
              f" --input_format=native --output_format=hf --output={os.path.join(rel, 'hf')}",
              ""]
    return "\n".join(lines)


def run_and_print(run_dir: str, overwrite: bool, experiment: str, overrides=(),
                  finetune_experiment: str = EXPERIMENT, finetune_overrides=(),
                  finetune_overwrite: bool = False,
                  train_fraction: float = TRAIN_FRACTION) -> dict:
    """The demo's pretraining (`pretraining.demo.run`: `overwrite`,
    `experiment`, `overrides` are its), then `run`; prints the result."""
    from pretraining import demo

    def pretrain():
        return demo.run(run_dir, overwrite, experiment, overrides)

    summary = run(run_dir, overwrite or finetune_overwrite, finetune_experiment,
                  finetune_overrides, pretrain, train_fraction)
    sys.stdout.write(describe(summary))
    sys.stdout.write(cli.to_json({k: summary[k] for k in (
        "pretrained_accuracy", "scratch_accuracy", "majority_accuracy", "wall_seconds")})
        + "\n")
    return summary


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]} (every setting is a --flag).")
    f = flags.FLAGS
    run_and_print(f.run_dir, False, f.experiment, f.override, f.finetune_experiment,
                  f.finetune_override, f.overwrite, f.finetune_train_fraction)


if __name__ == "__main__":
    cli.run(main, define_flags)  # bad flags, config or data: one line, exit 2
