"""Training checkpoints: model, optimizer, step and dropout RNG state.

The data position needs little state: the input pipeline is a pure function
of the seed, and a resumed run skips the global batches it has already
consumed (`step`, plus a `data_offset` after skipped non-finite steps). Resume
order: the run's own newest checkpoint that restores (found by listing
`ckpt-N.index`), else `train.init_checkpoint`, else scratch.
"""

import os
import re

import tensorflow as tf
from absl import logging


def rng_variables(model):
    """Keras seed-generator states (dropout RNG): not tracked by
    `tf.train.Checkpoint(model=...)`, so saved explicitly."""
    return [v for v in model.non_trainable_variables if "seed_generator_state" in v.path]


_STEP = re.compile(r"^ckpt-(\d+)\.index$")


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """(step, prefix) of every `ckpt-N` with an `.index` file, newest first:
    found by listing, whatever the `checkpoint` pointer file says."""
    if not tf.io.gfile.isdir(directory):
        return []
    found = []
    for name in tf.io.gfile.listdir(directory):
        match = _STEP.match(name.rstrip("/"))
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name[:-len(".index")])))
    return sorted(found, reverse=True)


def _checkpoint_files(directory: str) -> list[str]:
    """Names of files that belong to checkpoints (not the pointer or temporaries)."""
    if not tf.io.gfile.isdir(directory):
        return []
    return sorted(n for n in tf.io.gfile.listdir(directory)
                  if n.startswith("ckpt-") and not n.rstrip("/").endswith("_temp"))


def _pointer_latest(directory: str) -> tuple[str | None, str | None]:
    """(the pointer's latest prefix, why it cannot be used) of `directory/checkpoint`."""
    pointer = os.path.join(directory, "checkpoint")
    if not tf.io.gfile.exists(pointer):
        return None, f"{pointer} is missing"
    try:
        state = tf.train.get_checkpoint_state(directory)
    except Exception as e:  # pylint: disable=broad-except  (garbled text: several types)
        return None, f"{pointer} is unreadable ({type(e).__name__})"
    if state is None or not state.model_checkpoint_path:
        return None, f"{pointer} names no checkpoint"
    return state.model_checkpoint_path, None


class RunCheckpoint:
    """A `tf.train.CheckpointManager` over `model_dir/checkpoints`.

    Resume never trusts the `checkpoint` pointer file alone: the candidates
    are the `ckpt-N` prefixes found by listing, newest first; one that does
    not restore (cut or corrupted files) is skipped with a warning saying
    why. A directory that holds checkpoint files none of which restores is
    refused: training never starts from scratch over them.

    Args:
        model_dir: str. Run directory.
        model: the Keras model being trained.
        optimizer: its optimizer, already built.
        step: int64 `tf.Variable`, the number of completed train steps.
        max_to_keep: int. Checkpoints kept on disk.
        extra: dict of further trackables to save (counters, EMA, ...).
        worker_id: int or None. A non-chief worker's id: it saves to scratch
            and never writes the checkpoint directory.
    """

    def __init__(self, model_dir, *, model, optimizer, step, max_to_keep=3, extra=None,
                 worker_id=None):
        self.directory = os.path.join(model_dir, "checkpoints")
        self.step = step
        self.max_to_keep = max_to_keep
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, step=step, rng=rng_variables(model),
            **(extra or {}))
        self.manager = None  # Made by `restore_or_initialize` (the pointer may need repair).
        self.latest = None
        # Under MultiWorkerMirroredStrategy every worker must take part in a
        # save; only the chief's copy is kept, the others write to a scratch
        # directory that is removed again.
        self.scratch = (None if worker_id is None
                        else os.path.join(model_dir, f".scratch-worker-{worker_id}"))

    def restore_or_initialize(self) -> int | None:
        """Restores the newest checkpoint that restores; returns its step, or
        None when the directory holds no checkpoint.

        Raises:
            ValueError: checkpoint files exist but none of them restores
                (nothing in the directory is changed then).
        """
        pointed, pointer_problem = _pointer_latest(self.directory)
        candidates = list_checkpoints(self.directory)
        skipped = []
        for step, prefix in candidates:
            try:
                self.checkpoint.restore(prefix).assert_existing_objects_matched()
            except Exception as e:  # pylint: disable=broad-except  (cut files: many types)
                reason = f"{type(e).__name__}: {first_line(e)}"
                logging.warning("Skipping checkpoint %s: it does not restore (%s).",
                                prefix, reason)
                skipped.append(f"{prefix} ({reason})")
                continue
            if skipped or pointer_problem or pointed != prefix:
                logging.warning("Resuming from %s, the newest checkpoint that restores%s%s.",
                                prefix, f"; skipped {len(skipped)} newer" if skipped else "",
                                f"; {pointer_problem}" if pointer_problem else "")
            self._open_manager(prefix, [p for s, p in reversed(candidates) if s <= step],
                               repair=pointer_problem is not None or pointed != prefix)
            self.latest = prefix
            logging.info("Resumed from %s at step %d.", prefix, int(self.step.numpy()))
            return int(self.step.numpy())
        files = _checkpoint_files(self.directory)
        if skipped or files:
            raise ValueError(
                f"No checkpoint in {self.directory} restores: "
                + ("; ".join(skipped) if skipped else
                   f"no ckpt-N.index among {files[:6]}")
                + ". Nothing was changed. Restore the files from a backup, point "
                "--model_dir elsewhere, or move these checkpoints away to start again "
                "(a different model config cannot resume them).")
        logging.info("No checkpoint in %s.", self.directory)
        self._open_manager(None, [], repair=bool(pointer_problem)
                           and "unreadable" in pointer_problem)
        return None

    def _open_manager(self, latest, kept, repair):
        """Removes orphan `ckpt-N_temp/` directories, rewrites an unusable
        pointer file to name `latest` and `kept`, and opens the manager
        (chief only: other workers never write the directory)."""
        if self.scratch is not None:
            return
        if tf.io.gfile.isdir(self.directory):
            for name in tf.io.gfile.listdir(self.directory):
                name = name.rstrip("/")
                if name.startswith("ckpt-") and name.endswith("_temp"):
                    logging.warning("Removing %s, left by a save that did not finish.",
                                    os.path.join(self.directory, name))
                    tf.io.gfile.rmtree(os.path.join(self.directory, name))
        pointer = os.path.join(self.directory, "checkpoint")
        if repair and latest:
            lines = [f'model_checkpoint_path: "{os.path.basename(latest)}"'] + [
                f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in kept]
            tmp = pointer + ".tmp"
            with tf.io.gfile.GFile(tmp, "w") as f:
                f.write("\n".join(lines) + "\n")
            tf.io.gfile.rename(tmp, pointer, overwrite=True)
            logging.warning("Rewrote %s to name %s.", pointer, os.path.basename(latest))
        elif repair:
            tf.io.gfile.remove(pointer)
            logging.warning("Removed %s: unreadable, and no checkpoint to name.", pointer)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.directory, max_to_keep=self.max_to_keep,
            checkpoint_name="ckpt", step_counter=self.step)

    def save(self, step: int) -> str:
        """Writes `ckpt-<step>`.

        Raises:
            ValueError: the write failed (a full disk, say): the message names
                the directory and the last checkpoint, which is kept.
        """
        if self.scratch is not None:
            scratch = tf.train.CheckpointManager(self.checkpoint, self.scratch, max_to_keep=1)
            scratch.save(checkpoint_number=step)
            tf.io.gfile.rmtree(self.scratch)
            return self.scratch
        try:
            path = self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as e:
            temp = os.path.join(self.directory, f"ckpt-{step}_temp")
            try:
                if tf.io.gfile.isdir(temp):
                    tf.io.gfile.rmtree(temp)
            except (OSError, tf.errors.OpError):
                pass
            raise ValueError(
                f"Saving checkpoint ckpt-{step} in {self.directory} failed: {first_line(e)}. "
                f"The last checkpoint is kept: {self.latest or 'none yet'}. Free space (or "
                "fix the directory) and run the same command to resume.") from None
        self.latest = path
        logging.info("Saved checkpoint %s", path)
        return path


def first_line(error: Exception) -> str:
    text = (getattr(error, "message", None) or str(error) or type(error).__name__).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


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
