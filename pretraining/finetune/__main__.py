"""Fine-tune a BERT checkpoint on labelled data.

    python -m pretraining.finetune --init=RUN_OR_CHECKPOINT_DIR \\
        --train_file=train.tsv --eval_file=dev.tsv --text_field=sentence \\
        --model_dir=runs/ft [--task=single_label|multi_label|regression] \\
        [--text_pair_field=F] [--label_field=F] [--test_file=test.tsv] \\
        [--max_seq_length=128] [--tokenizer=FILE] [--from_scratch]
    python -m pretraining.finetune --experiment=configs/finetune/X.json --model_dir=DIR

The shortcut flags set the `finetune` section (they win over the
experiment's); `--override=section.field=value` sets any field. Re-running
the same command resumes from the newest checkpoint. Exit status: 0 done;
2 bad flag, config, data or checkpoint (one line on stderr); 75 stopped by
SIGTERM after a checkpoint (rerun to resume).
"""

from absl import flags, logging

from pretraining import cli

# Shortcut flags: each sets `finetune.<name>` when given.
_STRING_FLAGS = {
    "init": "Our run directory, a Google BERT checkpoint directory or a Hugging Face "
            "directory to start from.",
    "train_file": "Train split: TSV with a header, JSONL, or tfds:NAME[:SPLIT].",
    "eval_file": "Dev split (same formats).",
    "test_file": "Split to predict into predictions.jsonl (labels optional).",
    "text_field": "Column/field of the text.",
    "text_pair_field": "Column/field of the second text (sentence pairs).",
    "label_field": "Column/field of the label.",
    "label_separator": "Multi-label: the separator of labels in one string field.",
    "tokenizer": "SentencePiece .model or WordPiece vocab.txt (default: --init's).",
    "tfds_data_dir": "TFDS data directory (never downloads).",
}


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    cli.define_experiment_flags(None)
    flags.DEFINE_string("model_dir", None, "Run directory.", required=True)
    for name, help_text in _STRING_FLAGS.items():
        flags.DEFINE_string(name, None, help_text)
    flags.DEFINE_enum("task", None, ["single_label", "multi_label", "regression"], "Task.")
    flags.DEFINE_list("labels", None, "The label list (default: sorted from the train split).")
    flags.DEFINE_integer("max_seq_length", None, "Tokens per example.", lower_bound=1)
    flags.DEFINE_bool("from_scratch", None, "With --init: its config and tokenizer only, "
                      "random weights (the baseline for pretraining).")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                      "Distribution strategy.")
    flags.DEFINE_integer("num_logical_cpus", 0, "With --strategy=mirrored and no GPU: split "
                         "the CPU into this many logical devices (testing).", lower_bound=0)
    flags.DEFINE_string("tpu", "", "TPU name or 'local' (TPU VM), with --strategy=tpu.")
    flags.DEFINE_bool("overwrite", False, "Delete the run in --model_dir and start again.")


def shortcut_overrides(values: dict) -> list[str]:
    """The shortcut flags given (not None) as `finetune.` overrides."""
    import json
    return [f"finetune.{name}={value if isinstance(value, str) else json.dumps(value)}"
            for name, value in values.items() if value is not None]


def build_experiment(experiment_path, overrides):
    """The experiment of `--experiment` (or the shortcut flags alone)."""
    from pretraining.finetune.config import FinetuneExperiment
    if experiment_path:
        return FinetuneExperiment.from_json(experiment_path, overrides=list(overrides))
    return FinetuneExperiment.from_dict({"finetune": {}}, overrides=list(overrides))


def run(experiment, model_dir, strategy_name="default", num_logical_cpus=0, tpu="",
        overwrite=False) -> dict:
    """Prepares the data and fine-tunes; returns the run's summary."""
    from pretraining.strategy import create_strategy
    strategy = create_strategy(strategy_name, num_logical_cpus, tpu)
    from pretraining.finetune.prepare import prepare
    from pretraining.finetune.trainer import FinetuneTrainer
    prepared = prepare(experiment, model_dir)
    logging.info("Experiment: %s", cli.to_json(prepared.experiment.to_dict()))
    trainer = FinetuneTrainer(prepared.experiment, model_dir, prepared.task, strategy,
                              init=prepared.init, overwrite=overwrite)
    try:
        return trainer.train()
    finally:
        trainer.close()


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]} (every setting is a --flag or an "
                         "--override).")
    f = flags.FLAGS
    names = list(_STRING_FLAGS) + ["task", "labels", "max_seq_length", "from_scratch"]
    overrides = shortcut_overrides({n: getattr(f, n) for n in names}) + list(f.override)
    experiment = build_experiment(f.experiment, overrides)
    summary = run(experiment, f.model_dir, f.strategy, f.num_logical_cpus, f.tpu, f.overwrite)
    print(cli.to_json(summary))


if __name__ == "__main__":
    cli.run(main, define_flags)  # bad flags, config or data: one line, exit 2
