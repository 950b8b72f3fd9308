"""Pretrain a BERT model: `python -m pretraining.train --experiment=JSON --model_dir=DIR`.

Re-running the same command on an existing `--model_dir` resumes from its
newest checkpoint that restores. Exit status (docs/reliability.md): 0 done;
2 refused or stopped with a one-line reason (bad flag, config or data, a run
directory in use or not writable, checkpoints that do not restore, a full
disk, a non-finite loss); 75 stopped by SIGTERM after writing a checkpoint
(rerun to resume); 1 anything else (a bug: a traceback).
"""

import sys

from absl import app, flags, logging

from pretraining import cli, cpu_env, preemption
from pretraining.config import ExperimentConfig

flags.DEFINE_string("experiment", None, "Experiment: a JSON file, or a shipped name such as "
                    "demo or smoke_cpu (pretraining/configs/experiments/).")
flags.DEFINE_string("model_dir", None, "Run directory: checkpoints, TensorBoard, summary.json.")
flags.DEFINE_multi_string("override", [], "section.field=value, e.g. train.steps=50 (repeatable).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "Distribution strategy.")
flags.DEFINE_integer("num_logical_cpus", 0, "With --strategy=mirrored and no GPU: split the "
                     "CPU into this many logical devices (testing).", lower_bound=0)
flags.DEFINE_string("tpu", "", "TPU name or 'local' (TPU VM), with --strategy=tpu.")
flags.mark_flags_as_required(["experiment", "model_dir"])


def run(experiment_path, model_dir, overrides=(), strategy_name="default",
        num_logical_cpus=0, tpu=""):
    # Devices first: logical CPUs and TPUs must be set up before any TF op.
    from pretraining.strategy import create_strategy
    strategy = create_strategy(strategy_name, num_logical_cpus, tpu)
    from pretraining.trainer import Trainer
    experiment = ExperimentConfig.from_json(experiment_path, overrides=list(overrides))
    logging.info("Experiment %s:\n%s", experiment_path, experiment.to_json())
    trainer = Trainer(experiment, model_dir, strategy)
    try:
        return trainer.train()
    finally:
        trainer.close()  # The run directory's lock.


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        summary = cli.run_or_exit(run, f.experiment, f.model_dir, f.override, f.strategy,
                                  f.num_logical_cpus, f.tpu)
    except preemption.Preempted as e:
        logging.warning("%s", e)
        sys.exit(preemption.EXIT_PREEMPTED)
    logging.info("Summary: %s", summary)


if __name__ == "__main__":
    cpu_env.apply_defaults()  # Before TensorFlow loads.
    app.run(main)
