"""The trainer's checks of its records: manifest against the experiment at
start, the first eval batch read early, and the shard named when a read breaks."""

import tensorflow as tf

from data_pipeline import input as data_input
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
    if problems:
        raise ValueError(f"The {split} records in {data_dir} do not fit the experiment: "
                         + "; ".join(problems)
                         + ". Rebuild the data or fix the model config.")
    data_input.check_shards(data_dir, manifest)  # every shard present, not cut short
    return manifest


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
