"""Training checkpoints: model, optimizer, step and dropout RNG state.

The data position needs little state: the input pipeline is a pure function
of the seed, and a resumed run skips the global batches it has already
consumed (`step`, plus a `data_offset` after skipped non-finite steps). Resume order: the run's own latest checkpoint, else scratch.
"""

import os

import tensorflow as tf
from absl import logging


def rng_variables(model):
    """Keras seed-generator states (dropout RNG): not tracked by
    `tf.train.Checkpoint(model=...)`, so saved explicitly."""
    return [v for v in model.non_trainable_variables if "seed_generator_state" in v.path]


class RunCheckpoint:
    """A `tf.train.CheckpointManager` over `model_dir/checkpoints`.

    Args:
        model_dir: str. Run directory.
        model: the Keras model being trained.
        optimizer: its optimizer, already built.
        step: int64 `tf.Variable`, the number of completed train steps.
        max_to_keep: int. Checkpoints kept on disk.
        extra: dict of further trackables to save (counters, EMA, ...).
        worker_id: int or None. A non-chief worker's id: it saves to scratch.
    """

    def __init__(self, model_dir, *, model, optimizer, step, max_to_keep=3, extra=None,
                 worker_id=None):
        self.directory = os.path.join(model_dir, "checkpoints")
        self.step = step
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, step=step, rng=rng_variables(model),
            **(extra or {}))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.directory, max_to_keep=max_to_keep, checkpoint_name="ckpt",
            step_counter=step)
        # Under MultiWorkerMirroredStrategy every worker must take part in a
        # save; only the chief's copy is kept, the others write to a scratch
        # directory that is removed again.
        self.scratch = (None if worker_id is None
                        else os.path.join(model_dir, f".scratch-worker-{worker_id}"))

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore_or_initialize(self) -> int | None:
        """Restores the latest checkpoint if there is one; returns its step."""
        path = self.manager.latest_checkpoint
        if not path:
            logging.info("No checkpoint in %s.", self.directory)
            return None
        self.checkpoint.restore(path).assert_existing_objects_matched()
        step = int(self.step.numpy())
        logging.info("Resumed from %s at step %d.", path, step)
        return step

    def save(self, step: int) -> str:
        if self.scratch is not None:
            scratch = tf.train.CheckpointManager(self.checkpoint, self.scratch, max_to_keep=1)
            scratch.save(checkpoint_number=step)
            tf.io.gfile.rmtree(self.scratch)
            return self.scratch
        path = self.manager.save(checkpoint_number=step)
        logging.info("Saved checkpoint %s", path)
        return path


def load_init_checkpoint(path: str, model) -> None:
    """Loads weights only (no optimizer, step or RNG) from a checkpoint this
    trainer wrote: the encoder must match entirely, the masked-LM head is
    loaded when the checkpoint has it.

    Args:
        path: a checkpoint prefix (`.../ckpt-1000`) or a directory holding one.
        model: the `BertPretrainer` being trained.
    """
    prefix = path
    if tf.io.gfile.isdir(path):
        prefix = tf.train.latest_checkpoint(path) or tf.train.latest_checkpoint(
            os.path.join(path, "checkpoints"))
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
        raise ValueError(f"train.init_checkpoint={path!r} is not a checkpoint prefix or a "
                         "directory with one (expected e.g. runs/old/checkpoints/ckpt-1000).")
    encoder = tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=model.encoder))
    try:
        encoder.read(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ValueError(f"train.init_checkpoint={prefix!r} does not hold this model's "
                         f"encoder (different config?): {str(e)[:500]}") from None
    head = tf.train.Checkpoint(model=tf.train.Checkpoint(masked_lm=model.masked_lm))
    try:
        head.read(prefix).expect_partial().assert_existing_objects_matched()
        logging.info("Initialised encoder and masked-LM head from %s.", prefix)
    except AssertionError:
        logging.warning("Initialised the encoder from %s; it has no matching masked-LM "
                        "head, which starts from scratch.", prefix)
