"""The whole path on the built-in sample: `python -m pretraining.demo`.

Raw text (Python's own documentation) → SentencePiece tokenizer → masked-LM
TFRecords (train + held-out) → pretraining of a small BERT on the CPU →
held-out evaluation against a frequency baseline → `RUN_DIR/summary.json`.
Running it again resumes the finished steps; `--overwrite` starts clean.
"""

import collections
import os
import shutil
import sys
import time

from absl import flags, logging

from pretraining import cli


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_string("run_dir", "runs/demo", "Where the demo writes data, checkpoints and "
                        "summary.json (relative to the current directory).")
    flags.DEFINE_bool("overwrite", False, "Delete --run_dir first and start clean.")
    flags.DEFINE_bool("finetune", False, "Then fine-tune the checkpoint on a labelled task of "
                      "the sample, against the same model from random weights and the "
                      "majority class (pretraining.demo_finetune).")
    cli.define_experiment_flags("demo")

MAX_SEQ_LENGTH = 128
MAX_PREDICTIONS_PER_SEQ = 20
EVAL_FRACTION = 0.05
DUPE_FACTOR = 5  # different static masks of each sequence: less overfitting
SEED = 12345


def prepare_data(data_dir: str, vocab_size: int) -> dict:
    """Builds (or reuses) the sample corpus, tokenizer and records in `data_dir`."""
    from data_pipeline import build, features, sample_corpus, tokenization
    train_manifest = os.path.join(data_dir, "train", features.MANIFEST_FILE)
    eval_manifest = os.path.join(data_dir, "eval", features.MANIFEST_FILE)
    spm_prefix = os.path.join(data_dir, "spm")
    if all(os.path.exists(p) for p in (train_manifest, eval_manifest, spm_prefix + ".model")):
        manifest = features.Manifest.read(os.path.join(data_dir, "train"))
        if manifest.vocab_size == vocab_size:
            logging.info("Reusing the records in %s (use --overwrite to rebuild).", data_dir)
            return {"reused": True}
    os.makedirs(data_dir, exist_ok=True)
    timings = {}
    start = time.time()
    corpus_path = os.path.join(data_dir, "corpus.txt")
    stats = sample_corpus.write_sample_corpus(corpus_path)
    timings["corpus_seconds"] = time.time() - start
    logging.info("Sample corpus: %s -> %s", stats, corpus_path)
    start = time.time()
    tokenization.train_sentencepiece([corpus_path], vocab_size, spm_prefix, seed=SEED)
    timings["tokenizer_seconds"] = time.time() - start
    start = time.time()
    manifests = build.build_mlm(
        [corpus_path], spm_prefix + ".model", data_dir, max_seq_length=MAX_SEQ_LENGTH,
        max_predictions_per_seq=MAX_PREDICTIONS_PER_SEQ, seed=SEED, num_shards=2,
        eval_fraction=EVAL_FRACTION, dupe_factor=DUPE_FACTOR,
        source="built-in sample (pydoc topics + stdlib docstrings)",
        overwrite=True)  # matching records were reused above
    timings["records_seconds"] = time.time() - start
    timings.update({f"{split}_examples": m.num_examples for split, m in manifests.items()})
    return timings


def frequency_baseline(train_dir: str, eval_dir: str) -> tuple[int, float]:
    """Accuracy on the held-out masked tokens of always predicting the token
    most often masked in the training records."""
    from data_pipeline import input as data_input

    def masked_ids(data_dir):
        for example in data_input.iterate_numpy(data_dir):
            weights = example["masked_lm_weights"] > 0
            yield from example["masked_lm_ids"][weights].tolist()

    most_common, _ = collections.Counter(masked_ids(train_dir)).most_common(1)[0]
    held_out = list(masked_ids(eval_dir))
    return most_common, sum(i == most_common for i in held_out) / max(len(held_out), 1)


def run(run_dir: str, overwrite: bool, experiment_path: str, overrides=()) -> dict:
    start = time.time()
    run_dir = os.path.abspath(run_dir)
    if overwrite and os.path.exists(run_dir):
        logging.info("--overwrite: deleting %s", run_dir)
        shutil.rmtree(run_dir)
    from pretraining.config import ExperimentConfig
    data_dir = os.path.join(run_dir, "data")
    overrides = [f"data.train_dir={data_dir}/train", f"data.eval_dir={data_dir}/eval",
                 *overrides]
    experiment = ExperimentConfig.from_json(experiment_path, overrides=overrides)
    data_info = prepare_data(data_dir, experiment.model.vocab_size)

    from pretraining.trainer import Trainer
    model_dir = os.path.join(run_dir, "model")
    trainer = Trainer(experiment, model_dir)
    try:
        result = trainer.train()
    finally:
        trainer.close()  # The run directory's lock.
    records = trainer.log.records()
    token_id, baseline = frequency_baseline(trainer.train_dir, trainer.eval_dir)
    summary = {
        "run_dir": run_dir,
        "model_dir": model_dir,
        "steps": result["step"],
        "first_loss": records[0]["loss"] if records else None,
        "last_loss": result.get("loss"),
        "eval_loss": result.get("eval_loss"),
        "eval_masked_lm_accuracy": result.get("eval_masked_lm_accuracy"),
        "baseline_masked_lm_accuracy": baseline,
        "baseline_token_id": token_id,
        "examples_per_second": result.get("examples_per_second"),
        "resumed_from_step": trainer.resumed_from,
        "data": data_info,
        "wall_seconds": time.time() - start,
    }
    from pretraining.metrics_log import write_json_atomic
    write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
    return summary


def describe(summary: dict) -> str:
    run_dir = summary["run_dir"]
    rel = os.path.relpath(run_dir)
    rel = run_dir if rel.startswith("..") else rel
    lines = [
        "",
        "Demo finished.",
        f"  run directory        {run_dir}",
        f"  steps                {summary['steps']}"
        + (f" (resumed from step {summary['resumed_from_step']})"
           if summary["resumed_from_step"] is not None else ""),
        f"  first / last loss    {summary['first_loss']:.3f} / {summary['last_loss']:.3f}",
        f"  held-out MLM loss    {summary['eval_loss']:.3f}",
        f"  held-out MLM acc.    {summary['eval_masked_lm_accuracy']:.1%}   "
        f"(frequency baseline {summary['baseline_masked_lm_accuracy']:.1%})",
        f"  throughput           {summary['examples_per_second']:.0f} examples/s",
        f"  wall time            {summary['wall_seconds']:.0f} s",
        f"  figures              {os.path.join(rel, 'summary.json')}",
        "",
        "Next:",
        f"  tensorboard --logdir {os.path.join(rel, 'model')}",
        "  python -m pretraining.train --experiment=demo "
        "--model_dir=runs/mine --override=train.steps=2000",
        f"  python -m data_pipeline.build --task=mlm --input='my_corpus/*.txt' "
        f"--tokenizer={os.path.join(rel, 'data', 'spm.model')} --output_dir=runs/my_data "
        "--max_seq_length=128 --max_predictions_per_seq=20 --seed=1 --eval_fraction=0.02",
        "",
    ]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]} (every setting is a --flag or an "
                         "--override).")
    f = flags.FLAGS
    if f.finetune:  # Pretraining (a finished run resumes at once), then fine-tuning.
        from pretraining import demo_finetune
        demo_finetune.run_and_print(f.run_dir, f.overwrite, f.experiment, f.override)
        return
    summary = run(f.run_dir, f.overwrite, f.experiment, f.override)
    sys.stdout.write(describe(summary))
    sys.stdout.write(cli.to_json({k: summary[k] for k in (
        "first_loss", "last_loss", "eval_masked_lm_accuracy", "baseline_masked_lm_accuracy",
        "steps", "examples_per_second", "run_dir")}) + "\n")


if __name__ == "__main__":
    cli.run(main, define_flags)  # bad flags, config or data: one line, exit 2
