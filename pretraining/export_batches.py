"""The exact global batches a run trains on, for comparing with another framework.

    python -m pretraining.export_batches --experiment=JSON --num_batches=N --out=batches.npz

writes the global batches of steps 1…N of a run of that experiment (one
array per feature, `(N, global_batch_size, ...)`, and `steps`). They are
`data_pipeline.input.make_dataset(train_dir, global_batch_size,
seed=train.seed, shuffle_buffer=data.shuffle_buffer,
masked_lm_prob=data.masked_lm_prob)`: the order depends on
those values only (not on TensorFlow's global seed), and dynamic masks are
keyed on the seed and the batch index, so the trainer reads the same batches
whatever the replicas, hosts (`data.shard_by=batch`, the default) and
`train.gradient_accumulation_steps` (micro-batches split each global batch).

Not covered: `data.shard_by=files` with several hosts (each host then reads
its own files), and a run that skipped data after a non-finite loss
(`train.max_nan_skips`: its later steps read `data_offset` batches further).
"""

import os

from absl import flags, logging

from pretraining import cli
from pretraining.config import ExperimentConfig, resolve_path


def global_batches(experiment: ExperimentConfig, num_batches: int,
                   first_step: int = 1) -> dict:
    """The global batches of steps `first_step … first_step + num_batches - 1`.

    Args:
        experiment: `ExperimentConfig`. The run's experiment. Required.
        num_batches: int. How many steps' batches. Required.
        first_step: int. The first step (1 = the first update). Defaults to 1.

    Returns:
        dict of feature name -> `np.ndarray` `(num_batches, global_batch_size,
        ...)`, and `steps` `(num_batches,)`.
    """
    import numpy as np

    from data_pipeline import input as data_input

    if not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive int. Received: {num_batches!r}")
    if not isinstance(first_step, int) or first_step < 1:
        raise ValueError(f"first_step must be an int >= 1. Received: {first_step!r}")
    train, data = experiment.train, experiment.data
    dataset = data_input.make_dataset(
        resolve_path(data.train_dir), train.global_batch_size, training=True, seed=train.seed,
        shuffle_buffer=data.shuffle_buffer, skip_batches=first_step - 1,
        masked_lm_prob=data.masked_lm_prob)
    batches = list(dataset.take(num_batches).as_numpy_iterator())
    out = {name: np.stack([b[name] for b in batches]) for name in batches[0]}
    out["steps"] = np.arange(first_step, first_step + num_batches, dtype=np.int64)
    return out


def export(experiment: ExperimentConfig, num_batches: int, out_path: str,
           first_step: int = 1) -> str:
    """Writes `global_batches(...)` to `out_path` (`.npz`, written to a
    temporary name and renamed) and returns the path."""
    if not out_path.endswith(".npz"):
        raise ValueError(f"--out must end in .npz. Received: {out_path!r}")
    if experiment.data.shard_by == "files":
        logging.warning("data.shard_by=files: with several hosts each reads its own files, "
                        "and these are the batches of one host alone.")
    import numpy as np

    arrays = global_batches(experiment, num_batches, first_step)
    tmp = out_path[:-len(".npz")] + ".tmp.npz"
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, out_path)
    except OSError as e:
        raise ValueError(f"Writing --out={out_path!r} failed: {e.strerror or e}.") from None
    return out_path


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    cli.define_experiment_flags(None)
    flags.DEFINE_integer("num_batches", None, "Steps whose global batches are written.",
                         lower_bound=1, required=True)
    flags.DEFINE_integer("first_step", 1, "The first of those steps (1: the first update).",
                         lower_bound=1)
    flags.DEFINE_string("out", None, "Output .npz file.", required=True)
    flags.mark_flags_as_required(["experiment"])


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]} (every setting is a --flag or an "
                         "--override).")
    f = flags.FLAGS
    experiment = ExperimentConfig.from_json(f.experiment, overrides=list(f.override))
    path = export(experiment, f.num_batches, f.out, f.first_step)
    print(cli.to_json({"out": path, "steps": [f.first_step, f.first_step + f.num_batches - 1],
                       "global_batch_size": experiment.train.global_batch_size}))


if __name__ == "__main__":
    cli.run(main, define_flags)
