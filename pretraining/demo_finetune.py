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
        overrides=(), pretrain=None) -> dict:
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

    Returns:
        The summary dict (also in `RUN_DIR/finetune/summary.json`).
    """
    from data_pipeline import sample_task
    from pretraining.metrics_log import write_json_atomic
    start = time.time()
    run_dir = os.path.abspath(run_dir)
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
    task = sample_task.write_sample_task(os.path.join(root, "data"), num_classes=NUM_CLASSES)
    logging.info("Sample task: %d train, %d eval examples, labels %s; majority class %s "
                 "(%.1f%% of eval).", task.train_examples, task.eval_examples, task.labels,
                 task.majority_label, 100 * task.majority_accuracy)
    summary = {"run_dir": run_dir, "labels": task.labels,
               "pretraining_eval_masked_lm_accuracy": (pretraining or {}).get(
                   "eval_masked_lm_accuracy"),
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


def describe(summary: dict) -> str:
    """The result as the demo prints it."""
    root = os.path.join(summary["run_dir"], FINETUNE_DIR)
    rel = os.path.relpath(root)
    rel = root if rel.startswith("..") else rel
    rows = [("fine-tuned from the demo checkpoint", summary["pretrained"]),
            ("same model from random weights", summary["scratch"])]
    lines = ["", "Fine-tuning demo finished: which stdlib package a docstring paragraph "
             f"comes from ({len(summary['labels'])} packages, {summary['train_examples']} "
             f"train / {summary['eval_examples']} held-out paragraphs, split by module).", ""]
    lines.append(f"  {'held-out accuracy':38s} {'acc.':>6s}  {'macro-F1':>8s}  {'time':>6s}")
    for label, result in rows:
        lines.append(f"  {label:38s} {result['eval_accuracy']:6.1%}  "
                     f"{result['eval_macro_f1']:8.3f}  {result['wall_seconds']:5.0f}s")
    lines.append(f"  {'majority class (' + summary['majority_label'] + ')':38s} "
                 f"{summary['majority_accuracy']:6.1%}")
    lines += ["", f"  figures     {os.path.join(rel, 'summary.json')}",
              f"  export      python -m pretraining.convert --input={os.path.join(rel, 'pretrained')}"
              f" --input_format=native --output_format=hf --output={os.path.join(rel, 'hf')}",
              ""]
    return "\n".join(lines)


def run_and_print(run_dir: str, overwrite: bool, experiment: str, overrides=(),
                  finetune_experiment: str = EXPERIMENT, finetune_overrides=(),
                  finetune_overwrite: bool = False) -> dict:
    """The demo's pretraining (`pretraining.demo.run`: `overwrite`,
    `experiment`, `overrides` are its), then `run`; prints the result."""
    from pretraining import demo

    def pretrain():
        return demo.run(run_dir, overwrite, experiment, overrides)

    summary = run(run_dir, overwrite or finetune_overwrite, finetune_experiment,
                  finetune_overrides, pretrain)
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
                  f.finetune_override, f.overwrite)


if __name__ == "__main__":
    cli.run(main, define_flags)  # bad flags, config or data: one line, exit 2
