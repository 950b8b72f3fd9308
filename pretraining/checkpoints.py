"""Checkpoints: the run's own (`RunCheckpoint`) and reading weights from one.

A run's checkpoint holds the model, the optimizer, the step and the dropout
RNG state. The data position needs little state: the input pipeline is a
pure function of the seed, and a resumed run skips the global batches it has
already consumed (`step`, plus a `data_offset` after skipped non-finite
steps).

Resume order (`Trainer`, docs/reliability.md): (1) the run's own newest
checkpoint that restores, found by listing `ckpt-N.index`; (2) checkpoint
files none of which restores are refused (never a fresh start over them);
(3) no checkpoint at all: `train.init_checkpoint`, weights only; (4) scratch.

Weights only (`train.init_checkpoint`, `pretraining.convert`,
`pretraining.generate`): `find_prefix` finds the prefix, `restore_weights`
restores named parts of a `BertPretrainer` (`encoder`, `masked_lm`, `nsp`)
from one of our checkpoints or from Google's `bert_model.ckpt`, refusing a
checkpoint of another architecture, and `swap_in_ema` puts the EMA averages
in place of the raw weights.
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
        model_dir: str. Run directory. Required.
        model: the Keras model being trained. Required.
        optimizer: its optimizer, already built. Required.
        step: int64 `tf.Variable`, the number of completed train steps. Required.
        max_to_keep: int. Checkpoints kept on disk. Defaults to `3`.
        extra: dict of further trackables to save (counters, EMA, ...). Defaults to `None`.
        worker_id: int or None. A non-chief worker's id: it saves to scratch
            and never writes the checkpoint directory. Defaults to `None`.
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



# ---------------------------------------------------------------- weights only

PARTS = ("encoder", "masked_lm", "nsp")  # `BertPretrainer` attributes, in checkpoint order
_EMA = "ema/averages/{}/.ATTRIBUTES/VARIABLE_VALUE"


def find_prefix(path: str, what: str = "checkpoint") -> str:
    """The checkpoint prefix that `path` names: a prefix, an `.index` file, a
    run directory, its `checkpoints/` directory, or a directory holding one
    checkpoint without a pointer file (Google's `bert_model.ckpt`).

    Args:
        path: str. Local or `gs://` path. Required.
        what: str. The flag or field `path` came from, for messages.
            Defaults to "checkpoint".

    Raises:
        ValueError: no checkpoint there; the message names `what` and `path`.
    """
    if path.endswith(".index"):
        path = path[: -len(".index")]
    if tf.io.gfile.exists(path + ".index"):
        return path
    if tf.io.gfile.isdir(path):
        for directory in (path, os.path.join(path, "checkpoints")):
            pointed, _ = _pointer_latest(directory)  # made absolute by TensorFlow
            if pointed and tf.io.gfile.exists(pointed + ".index"):
                return pointed
            listed = list_checkpoints(directory)
            if listed:
                return listed[0][1]
        indexes = [n for n in tf.io.gfile.listdir(path) if n.endswith(".index")]
        if len(indexes) == 1:
            return os.path.join(path, indexes[0][: -len(".index")])
    raise ValueError(f"{what}={path!r} is not a checkpoint prefix or a directory with one: "
                     "give a prefix such as runs/old/checkpoints/ckpt-1000 (its .index file "
                     "must exist), a run directory or Google's bert_model.ckpt.")


def is_google_layout(prefix: str) -> bool:
    """True for a TF1 name-based checkpoint with Google's BERT names (`bert/...`)."""
    names = [name for name, _ in tf.train.list_variables(prefix)]
    return any(n.startswith("bert/") for n in names) and not any(
        n.startswith("model/") for n in names)


def restore_weights(prefix: str, model, parts=("encoder",), optional=(),
                    config_source: str = "the model config") -> list[str]:
    """Restores parts of `model` (weights only) from our checkpoint or Google's.

    Our checkpoints are read through the object graph (`model/<part>`);
    Google's `bert_model.ckpt` through the name table of
    `pretraining.formats.google`. A part of another shape, or missing, is
    refused with the variable and both shapes; so is an encoder with more
    layers than the model (the read alone would ignore them).

    Args:
        prefix: str. Checkpoint prefix (see `find_prefix`). Required.
        model: `BertPretrainer` to restore into. Required.
        parts: sequence of str, names in `PARTS` that must restore. Defaults
            to ("encoder",).
        optional: sequence of str, names in `PARTS` restored when the
            checkpoint has them (left as they are, with a warning, when not).
            Defaults to ().
        config_source: str. Where the model's config came from, for messages.
            Defaults to "the model config".

    Returns:
        The names of the parts restored.

    Raises:
        ValueError: naming the checkpoint, the part and what differs.
    """
    wanted = [p for p in (*parts, *optional) if getattr(model, p, None) is not None]
    try:
        google = is_google_layout(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"{prefix} cannot be read: {first_line(e)} (truncated or corrupt "
                         "checkpoint files?).") from None
    target = _condition_target(prefix, model, config_source)
    if google:
        restored = _restore_google(prefix, model, wanted, config_source)
    else:
        restored = [p for p in wanted if _restore_part(prefix, target, p, p in parts,
                                                      config_source)]
        _check_layer_count(prefix, target.encoder.config, config_source)
        if target is not model:  # a plain checkpoint: W_γ, W_β (zero) keep the plain outputs
            for part in restored:
                values = {v.path: v for v in getattr(target, part).weights}
                for v in getattr(model, part).weights:
                    if v.path in values:
                        v.assign(values[v.path])
    for part in wanted:
        if part not in restored:
            logging.warning("%s has no %s matching this model: it starts from scratch.",
                            prefix, part)
    logging.info("Restored %s from %s.", ", ".join(restored), prefix)
    return restored


def _condition_target(prefix, model, config_source):
    """The model to read `prefix` into: `model` itself, or, for a Conditional
    LayerNorm `model` and a checkpoint without a condition, the same model
    without one (its weights are then copied over, the condition's weights
    left at their zero-effect start). A conditioned checkpoint read into a
    model without a condition is refused: its outputs depend on a condition
    the model would drop."""
    from pretraining import conditioning
    config = model.encoder.config
    try:
        conditioned = conditioning.is_conditioned_checkpoint(prefix)
    except (tf.errors.OpError, ValueError):
        return model  # unreadable: the read below says so
    if conditioned and not config.condition_size:
        raise ValueError(f"{prefix} holds a conditioned model (Conditional LayerNorm weights) "
                         f"but {config_source} has condition_size=0: load it with the run's "
                         "own config (and give a condition).")
    if conditioned or not config.condition_size or not hasattr(model, "task"):
        return model
    from pretraining.model import BertEncoder
    from pretraining.pretrainer import BertPretrainer
    return BertPretrainer(BertEncoder(conditioning.unconditioned(config)), model.task,
                          getattr(model, "next_sentence", False))


def _mismatch(prefix, part, config_source, detail) -> ValueError:
    return ValueError(f"{prefix} does not hold this model's {part} (built from "
                      f"{config_source}): {detail}. A different model config? Use the config "
                      "the checkpoint was trained with.")


def _restore_part(prefix, model, part, required, config_source) -> bool:
    """Reads `model/<part>` of our checkpoint; False when it is absent (optional parts)."""
    target = tf.train.Checkpoint(model=tf.train.Checkpoint(**{part: getattr(model, part)}))
    try:
        status = target.read(prefix)
    except (ValueError, tf.errors.InvalidArgumentError) as e:
        raise _mismatch(prefix, part, config_source, first_line(e)) from None
    except tf.errors.OpError as e:
        raise ValueError(f"{prefix} cannot be read: {first_line(e)} (truncated or corrupt "
                         "checkpoint files?).") from None
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        if not required:
            return False
        found = re.findall(r"path=([^,\s]+), shape=(\([^)]*\))", str(e))
        what = "; ".join(f"{path} {shape}" for path, shape in found[:3]) or first_line(e)
        raise _mismatch(prefix, part, config_source,
                        f"not in the checkpoint: {what}") from None
    return True


def _check_layer_count(prefix, config, config_source) -> None:
    """Refuses a checkpoint holding `model/encoder/layer_N` for N =
    `num_hidden_layers` (the read ignores extra layers; variable names do not
    show them when the optimizer saved the variables first): probed with a
    layer of that name."""
    from pretraining.layers import TransformerLayer  # pylint: disable=import-outside-toplevel
    n = config.num_hidden_layers
    probe = TransformerLayer(config.hidden_size, config.num_attention_heads,
                             config.intermediate_size, config.hidden_act, 0.0, 0.0,
                             config.initializer_range,
                             condition_size=config.condition_hidden_size or config.condition_size,
                             layer_norm_position=config.layer_norm_position,
                             feed_forward=config.feed_forward, name=f"layer_{n}")
    probe.build((None, None, config.hidden_size))
    extra = tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=tf.train.Checkpoint(
        **{f"layer_{n}": probe})))
    try:
        status = extra.read(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError):
        return  # no layer_N: the layer count matches
    raise _mismatch(prefix, "encoder", config_source,
                    f"it has more encoder layers (model/encoder/layer_{n}) than "
                    f"num_hidden_layers={n}")


def _restore_google(prefix, model, wanted, config_source) -> list[str]:
    """Reads Google's names (the converter's reader) into the `wanted` parts."""
    from pretraining import checkpoint_names
    from pretraining.formats import google
    heads = "all" if "masked_lm" in wanted else "encoder"
    try:
        bundle = google.read(prefix, model.encoder.config, config_source, heads)
    except ValueError as e:
        raise ValueError(" ".join(str(e).split())) from None
    restored = []
    for part in wanted:
        variables = [v for v in getattr(model, part).weights
                     if checkpoint_names.lookup(v.path) is not None]
        if not variables or any(v.path not in bundle.weights for v in variables):
            continue
        for v in variables:
            v.assign(bundle.weights[v.path])
        restored.append(part)
    if "encoder" not in restored:
        raise _mismatch(prefix, "encoder", config_source, "Google's encoder names are missing")
    return restored


def swap_in_ema(prefix: str, model) -> None:
    """Sets `model.trainable_variables` to the checkpoint's EMA averages
    (`ema/averages/i`, kept in the same order by `optimizer.ema_decay`).

    Raises:
        ValueError: the checkpoint has no averages, or they do not follow `model`.
    """
    names = dict(tf.train.list_variables(prefix))
    count = sum(1 for n in names if n.startswith("ema/averages/")
                and n.endswith("/.ATTRIBUTES/VARIABLE_VALUE"))
    variables = model.trainable_variables
    if count == 0:
        raise ValueError(f"--ema: {prefix} has no EMA averages (trained without "
                         "optimizer.ema_decay?): drop --ema.")
    if count < len(variables):
        raise ValueError(f"--ema: {prefix} has {count} averages, the model has "
                         f"{len(variables)} trainable variables.")
    if count > len(variables):
        logging.warning("--ema: %d averages beyond this model's variables (e.g. an NSP head) "
                        "are not used.", count - len(variables))
    reader = tf.train.load_checkpoint(prefix)
    for i, v in enumerate(variables):
        shape = tuple(names[_EMA.format(i)])
        if shape != tuple(v.shape):
            raise ValueError(f"--ema: {prefix} ema/averages/{i} has shape {shape}, {v.path} "
                             f"has {tuple(v.shape)}: the averages do not follow this model.")
        v.assign(reader.get_tensor(_EMA.format(i)))
    logging.info("Took the EMA averages of %d variables from %s.", len(variables), prefix)


def load_init_checkpoint(path: str, model) -> list[str]:
    """`train.init_checkpoint`: weights only (no optimizer, step or RNG). The
    encoder must match entirely; the heads are restored when present. Reads
    our checkpoints and Google's `bert_model.ckpt` alike. Returns the parts
    restored."""
    prefix = find_prefix(path, "train.init_checkpoint")
    try:
        return restore_weights(prefix, model, ("encoder",), ("masked_lm", "nsp"),
                               "the experiment's model config")
    except ValueError as e:
        raise ValueError(f"train.init_checkpoint: {e}") from None
