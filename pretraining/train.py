"""Pretrain a BERT model: `python -m pretraining.train --experiment=JSON --model_dir=DIR`.

Re-running the same command on an existing `--model_dir` resumes from its
newest checkpoint that restores, with the experiment in its `config.json`:
another model or task is refused; another length, batch, data order or
optimizer/schedule is refused unless `--allow_changes` names the fields
(e.g. `--allow_changes=train.steps`: the schedule is rebuilt for the new end);
`--overwrite` deletes the old run once every check has passed.
Exit status (docs/reliability.md): 0 done;
2 refused or stopped with a one-line reason (bad flag, config or data, a run
directory in use or not writable, checkpoints that do not restore, a full
disk, a non-finite loss); 75 stopped by SIGTERM after writing a checkpoint
(rerun to resume); 1 anything else (a bug: a traceback).
"""

from absl import flags, logging

from pretraining import cli
from pretraining.config import ExperimentConfig


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    cli.define_experiment_flags(None)
    flags.DEFINE_string("model_dir", None, "Run directory: checkpoints, TensorBoard, "
                        "summary.json.", required=True)
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                      "Distribution strategy.")
    flags.DEFINE_integer("num_logical_cpus", 0, "With --strategy=mirrored and no GPU: split "
                         "the CPU into this many logical devices (testing).", lower_bound=0)
    flags.DEFINE_string("tpu", "", "TPU name or 'local' (TPU VM), with --strategy=tpu.")
    flags.DEFINE_list("allow_changes", [], "Resuming: fields that may differ from the run's "
                      "config.json, e.g. train.steps,optimizer.learning_rate (the schedule is "
                      "rebuilt for the new values).")
    flags.DEFINE_bool("overwrite", False, "Delete the run in --model_dir (after every check "
                      "has passed) and start again.")
    flags.mark_flags_as_required(["experiment"])


def run(experiment_path, model_dir, overrides=(), strategy_name="default",
        num_logical_cpus=0, tpu="", allow_changes=(), overwrite=False):
    # Devices first: logical CPUs and TPUs must be set up before any TF op.
    from pretraining.strategy import create_strategy
    strategy = create_strategy(strategy_name, num_logical_cpus, tpu)
    from pretraining.trainer import Trainer
    experiment = ExperimentConfig.from_json(experiment_path, overrides=list(overrides))
    logging.info("Experiment %s: %s", experiment_path, cli.to_json(experiment.to_dict()))
    trainer = Trainer(experiment, model_dir, strategy, allow_changes=allow_changes,
                      overwrite=overwrite)
    try:
        return trainer.train()
    finally:
        trainer.close()  # The run directory's lock.


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]} (every setting is a --flag or an "
                         "--override).")
    f = flags.FLAGS
    summary = run(f.experiment, f.model_dir, f.override, f.strategy, f.num_logical_cpus,
                  f.tpu, f.allow_changes, f.overwrite)
    logging.info("Summary: %s", cli.to_json(summary))


if __name__ == "__main__":
    cli.run(main, define_flags)  # bad flags, config or data: one line, exit 2
