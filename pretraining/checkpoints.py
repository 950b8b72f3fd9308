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
            logging.info("No checkpoint in %s: starting from scratch.", self.directory)
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
