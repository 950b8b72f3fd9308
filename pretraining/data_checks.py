"""The trainer's checks before step 1 and of its records: the batch split,
warnings for derived values users trip on, each manifest against the
experiment, train and eval records alike (tokenizer, NSP labels), the first
eval batch read early, and the shard named when a read breaks."""

import os

import tensorflow as tf
from absl import logging

from data_pipeline import input as data_input
from pretraining import conditioning
from pretraining.config import ExperimentConfig

# What a broken shard raises from the tf.data pipeline.
DATA_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
               tf.errors.FailedPreconditionError)


def check_data(experiment: ExperimentConfig, data_dir: str, split: str):
    """Refuses records whose manifest disagrees with the experiment; returns
    the manifest."""
    manifest = data_input.read_manifest(data_dir)
    model = experiment.model
    problems = []
    if manifest.task != experiment.task:
        problems.append(f"task: data has {manifest.task!r}, experiment has {experiment.task!r}")
    if manifest.vocab_size != model.vocab_size:
        problems.append(f"vocab_size: data has {manifest.vocab_size}, "
                        f"model has {model.vocab_size}")
    if manifest.max_seq_length > model.max_position_embeddings:
        problems.append(f"max_seq_length: data has {manifest.max_seq_length}, longer than the "
                        f"model's max_position_embeddings={model.max_position_embeddings}")
    problems += conditioning.check_manifest(manifest, model)
    if problems:
        raise ValueError(f"The {split} records in {data_dir} do not fit the experiment: "
                         + "; ".join(problems)
                         + ". Rebuild the data or fix the model config.")
    if split == "train":  # data.masked_lm_prob: dynamic records whose P holds the rate
        data_input.masking_rate(manifest, experiment.data.masked_lm_prob, data_dir)
    data_input.check_shards(data_dir, manifest)  # every shard present, not cut short
    return manifest


def check_batch(experiment: ExperimentConfig, replicas: int) -> None:
    """Refuses a global batch that the replicas and micro-batches do not split."""
    train = experiment.train
    if train.global_batch_size % (replicas * train.gradient_accumulation_steps):
        raise ValueError(
            f"train.global_batch_size={train.global_batch_size} must be divisible by the "
            f"number of replicas ({replicas}) times train.gradient_accumulation_steps "
            f"({train.gradient_accumulation_steps}).")


def warn_derived(experiment: ExperimentConfig, train_manifest, eval_manifest=None) -> list:
    """Logs (and returns) a warning for each derived value users trip on."""
    train, batch = experiment.train, experiment.train.global_batch_size
    warmup = experiment.optimizer.warmup_steps
    notes = []
    if experiment.optimizer.schedule != "piecewise" and warmup >= train.steps:
        notes.append(f"optimizer.warmup_steps={warmup} >= train.steps={train.steps}: the "
                     "learning rate never finishes its warmup (no decay).")
    if eval_manifest is not None and not train.eval_every:
        notes.append("train.eval_every=0 with data.eval_dir set: one evaluation, at the end "
                     "(set train.eval_every for evaluations during training).")
    if train.log_every and train.steps_per_loop > train.log_every:
        notes.append(f"train.steps_per_loop={train.steps_per_loop} is larger than "
                     f"train.log_every={train.log_every}: each compiled loop stops at the log "
                     f"line, so it runs {train.log_every} steps per call.")
    if train_manifest.num_examples < batch:
        notes.append(f"The train split has {train_manifest.num_examples} examples, fewer than "
                     f"train.global_batch_size={batch}: every batch repeats examples.")
    if eval_manifest is not None and eval_manifest.num_examples % batch:
        padded = batch - eval_manifest.num_examples % batch
        notes.append(f"The eval split's {eval_manifest.num_examples} examples do not divide "
                     f"into batches of {batch}: the last eval batch is padded with {padded} "
                     "empty examples (weight 0: the figures are exact).")
    for note in notes:
        logging.warning("%s", note)
    return notes


def check_eval_matches(train_manifest, train_where: str, eval_manifest,
                       eval_where: str) -> None:
    """Refuses eval records that a model trained on the train records cannot
    evaluate: another tokenizer, or NSP labels on one side only. `*_where`:
    a records directory or a manifest file (a run's `data_manifest.json`).
    Nothing to check when `eval_manifest` is None (no eval split)."""
    if eval_manifest is None:
        return
    data_input.check_same_tokenizer(train_manifest, train_where, eval_manifest, eval_where)
    if train_manifest.task == "mlm" and (
            train_manifest.next_sentence != eval_manifest.next_sentence):
        def side(manifest, where):
            path = where if where.endswith(".json") else os.path.join(where, "manifest.json")
            return f"{path} has next_sentence={str(manifest.next_sentence).lower()}"
        raise ValueError(f"NSP labels on one side only: {side(train_manifest, train_where)}, "
                         f"{side(eval_manifest, eval_where)}. Build both splits with the same "
                         "--next_sentence (the evaluation would fail after training).")


def probe_eval(data_dir: str, batch_size: int, seed: int) -> None:
    """Reads the first eval batch now, so a corrupt eval shard stops the run
    before training rather than at the first evaluation."""
    try:
        next(iter(data_input.make_dataset(data_dir, batch_size, training=False, seed=seed)))
    except StopIteration:
        pass
    except DATA_ERRORS as e:
        raise_data_error(data_dir, e)


def raise_data_error(data_dir: str, error: Exception):
    """A `ValueError` naming the shard (and record) that broke a read of
    `data_dir`; the original error again when every shard reads fine (then
    it was not the data)."""
    problem = data_input.find_bad_record(data_dir, error)
    if problem is None:
        raise error
    raise ValueError(problem.message()) from None
