"""Fine-tuning batches: encoded arrays -> `tf.data`, one task or several.

    dataset = finetune_dataset(arrays, 32, training=True, seed=0)
    mixed = mix_tasks([sst2_arrays, cola_arrays])         # multi-task rows
    dataset = finetune_dataset(mixed, 32, training=True, seed=0,
                               task_weights=[1.0, 1.0])    # or by size

Every batch has static shapes and a float32 `weight` `(batch,)`: 1 for a
real example, 0 for the rows that complete the last evaluation batch. The
training order depends on the seed and the epoch only (stateless, not on
TensorFlow's global seed), so a resumed run skips to its step cheaply.
"""

import numpy as np

TASK = "task"


def _order(n: int, seed: int, stream):
    """A permutation of range(n) keyed on (seed, stream)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(stream, tf.int64)])
    return tf.argsort(tf.random.stateless_uniform([n], seed=key))


def _task_counts(task: np.ndarray, task_weights) -> list[int]:
    """Rows of each task per epoch: the weights' shares of all rows."""
    num_tasks = int(task.max()) + 1
    if len(task_weights) != num_tasks or any(
            not np.isfinite(w) or w < 0 for w in task_weights) or not sum(task_weights):
        raise ValueError(f"task_weights must be {num_tasks} finite numbers >= 0, not "
                         f"all 0 (one per task). Received: task_weights={list(task_weights)}")
    share = np.asarray(task_weights, np.float64) / float(sum(task_weights))
    return [int(round(s * len(task))) for s in share]


def _weighted_epoch(task: np.ndarray, task_weights, seed: int):
    """A function epoch -> row indices of one epoch: `round(w_t * n)` rows of
    task t (its rows in a fresh order, repeated when it has fewer), all in
    one shuffled order. Returns (the function, rows per epoch)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    counts = _task_counts(task, task_weights)
    members = [np.flatnonzero(task == t) for t in range(len(counts))]
    empty = [t for t, (m, c) in enumerate(zip(members, counts)) if c and not len(m)]
    if empty:
        raise ValueError(f"Tasks {empty} have a weight but no training row.")
    streams = len(counts) + 1

    def epoch(index):
        parts = []
        for t, (rows, count) in enumerate(zip(members, counts)):
            if not count:
                continue
            repeats = -(-count // len(rows))
            order = tf.tile(_order(len(rows), seed, index * streams + t + 1), [repeats])
            parts.append(tf.gather(tf.constant(rows, tf.int64), order[:count]))
        rows = tf.concat(parts, 0)
        return tf.gather(rows, _order(sum(counts), seed, index * streams))

    return epoch, sum(counts)


def finetune_dataset(arrays: dict, batch_size: int, *, training: bool,
                     seed: int = 0, skip_batches: int = 0, task_weights=None):
    """A `tf.data.Dataset` of batches of `arrays` with static shapes.

    Args:
        arrays: dict. From `labelled.encode` or `mix_tasks` (any extra
            same-length arrays travel along).
        batch_size: int. Examples per batch (the global batch: shard rows
            per replica downstream).
        training: bool. True: every epoch in its own order keyed on (`seed`,
            epoch), repeated forever, batches crossing epoch boundaries,
            every `weight` 1. False: one pass in order; the last batch is
            completed with all-zero rows of `weight` 0, so every example is
            evaluated once.
        seed: int. Seed of the training order. Defaults to 0.
        skip_batches: int. Training batches already consumed (resume); costs
            part of one epoch's indices, no batch is read. Defaults to 0.
        task_weights: list of float | None. Training with a `task` array
            (`mix_tasks`): each epoch holds `round(w_t / sum(w) * n)` rows of
            task t (resampled when it has fewer); None: every row once per
            epoch, so tasks in proportion to their size. Defaults to None.

    Raises:
        ValueError: a bad batch size or weights, or a train split smaller
            than a batch.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"The batch size must be an int >= 1. Received: "
                         f"batch_size={batch_size!r}")
    n = len(arrays["input_ids"])
    if any(len(v) != n for v in arrays.values()):
        raise ValueError(f"Arrays must have one row per example: lengths "
                         f"{ {k: len(v) for k, v in arrays.items()} }.")
    if not n:
        raise ValueError("No example to batch: the split is empty.")
    if training and n < batch_size:
        raise ValueError(f"The train split has {n} examples, fewer than one batch "
                         f"(batch_size={batch_size}): lower the batch size or add "
                         "examples.")
    if task_weights is not None and TASK not in arrays:
        raise ValueError("task_weights needs a `task` array: mix the tasks' arrays "
                         "with mix_tasks.")
    tensors = {k: tf.constant(v) for k, v in arrays.items()}
    if training:
        if task_weights is None:
            epoch, length = (lambda e: _order(n, seed, e)), n
        else:
            epoch, length = _weighted_epoch(np.asarray(arrays[TASK]), task_weights, seed)
        position = skip_batches * batch_size
        indices = tf.data.Dataset.counter(start=position // length).flat_map(
            lambda e: tf.data.Dataset.from_tensor_slices(epoch(e)))
        indices = indices.skip(position % length).batch(batch_size, drop_remainder=True)

        def gather(index):
            batch = {k: tf.gather(v, index) for k, v in tensors.items()}
            batch["weight"] = tf.ones([batch_size], tf.float32)
            return batch
    else:
        padded = n + (-n) % batch_size
        indices = tf.data.Dataset.range(padded).batch(batch_size, drop_remainder=True)

        def gather(index):
            real = index < n
            rows = tf.minimum(index, n - 1)
            batch = {}
            for name, value in tensors.items():
                taken = tf.gather(value, rows)
                keep = tf.reshape(real, [-1] + [1] * (len(value.shape) - 1))
                batch[name] = tf.where(keep, taken, tf.zeros_like(taken))
            batch["weight"] = tf.cast(real, tf.float32)
            return batch
    return indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).prefetch(tf.data.AUTOTUNE)


def mix_tasks(tasks: list) -> dict:
    """Several tasks' encoded arrays as one set of rows, for a model that
    runs every task's head on every row and masks each head's loss by task.

    Args:
        tasks: list of dict. Each task's `labelled.encode` arrays, all of
            one `max_seq_length`; the task id is the list index.

    Returns:
        dict: the inputs concatenated in task order; `task` int32 `(n,)`;
        `label_<i>` for each labelled task i: its labels in its rows, zeros
        in the others' (shape and dtype of that task's `label`).

    Raises:
        ValueError: no task, or tasks of different sequence lengths.
    """
    if not tasks:
        raise ValueError("mix_tasks needs at least one task's arrays.")
    lengths = sorted({a["input_ids"].shape[1] for a in tasks})
    if len(lengths) > 1:
        raise ValueError(f"The tasks' arrays must share one max_seq_length. Received: "
                         f"{[a['input_ids'].shape[1] for a in tasks]}")
    sizes = [len(a["input_ids"]) for a in tasks]
    mixed = {name: np.concatenate([a[name] for a in tasks])
             for name in ("input_ids", "input_mask", "segment_ids")}
    mixed[TASK] = np.repeat(np.arange(len(tasks), dtype=np.int32), sizes)
    start = 0
    for i, (arrays, size) in enumerate(zip(tasks, sizes)):
        if "label" in arrays:
            label = arrays["label"]
            out = np.zeros((len(mixed[TASK]),) + label.shape[1:], label.dtype)
            out[start:start + size] = label
            mixed[f"label_{i}"] = out
        start += size
    return mixed
