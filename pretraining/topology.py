"""The run's topology (replicas, hosts, gradient accumulation) and what must
not depend on it.

A global batch is laid out the same way on any topology: replica `r` of `R`
holds rows `r·B/R … (r+1)·B/R - 1` of it (`data_pipeline.input.
make_replica_dataset` with `data.shard_by="batch"`), and accumulation splits a
replica's rows into consecutive micro-batches. `example_index` gives each row
its index in the global batch, which keys its dropout masks
(`dropout.Dropout`): an example gets the same masks whichever replica, host or
micro-batch it lands on. A resumed run states the topology change it resumed
across (`log_resume`); the data position, the optimizer state and the dropout
keys are all independent of it.
"""

import json
import os

import tensorflow as tf
from absl import logging

from pretraining import strategy as strategies
from pretraining.metrics_log import write_json_atomic

TOPOLOGY_FILE = "topology.json"


def example_index(context: tf.distribute.ReplicaContext, batch: dict):
    """int32 `(rows,)`: the global-batch index of each row of this replica's
    `batch` (`context`, the replica context the step runs in). The row count
    is read at run time: under MultiWorkerMirroredStrategy the batch
    dimension is not static."""
    rows = tf.shape(batch["input_ids"])[0]
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return replica * rows + tf.range(rows, dtype=tf.int32)


def micro_batch(batch: dict, k: int, i):
    """Micro-batch `i` (an int or int scalar tensor) of `k`: the `i`-th of
    `k` equal runs of consecutive rows of `batch` (whose row count may be
    unknown when traced, as under MultiWorkerMirroredStrategy)."""
    return tf.nest.map_structure(lambda t: tf.reshape(t, [k, -1] + list(t.shape[1:]))[i], batch)


def accumulate(forward_backward, batch: dict, k: int):
    """`forward_backward(micro_batch) -> (sums, grads)` over the `k` equal
    micro-batches of `batch` (`micro_batch`), sums and gradients added up:
    the same numbers as the whole batch at once (each micro-batch's loss
    normalised by the global count), with the activation memory of one
    micro-batch. Returns `(sums, grads)`, the gradients dense (sparse
    embedding gradients are made dense here, outside any XLA-compiled
    `forward_backward`). Shared by the pretraining and fine-tuning trainers."""
    if k == 1:
        sums, grads = forward_backward(batch)
        return sums, [tf.convert_to_tensor(g) for g in grads]
    sums, grads = forward_backward(micro_batch(batch, k, 0))
    grads = [tf.convert_to_tensor(g) for g in grads]
    for i in tf.range(1, k):
        more_sums, more = forward_backward(micro_batch(batch, k, i))
        sums = {key: value + more_sums[key] for key, value in sums.items()}
        grads = [g + tf.convert_to_tensor(m) for g, m in zip(grads, more)]
    return sums, grads


def describe(strategy: tf.distribute.Strategy, accumulation_steps: int) -> dict:
    """{"replicas", "hosts", "gradient_accumulation_steps"} of this launch."""
    return {"replicas": strategy.num_replicas_in_sync, "hosts": strategies.num_hosts(strategy),
            "gradient_accumulation_steps": accumulation_steps}


def _text(topology: dict) -> str:
    return (f"{topology['replicas']} replica(s) on {topology['hosts']} host(s), "
            f"{topology['gradient_accumulation_steps']} accumulation step(s)")


def log_resume(model_dir: str, strategy: tf.distribute.Strategy, train,
               resumed_from: int | None, write: bool = True) -> dict | None:
    """Logs the topology change a resume crosses: the previous launch's (the
    run's `topology.json`) against this one's (`strategy`, and `train`'s
    `gradient_accumulation_steps`); records this one there when `write` (the
    chief). Returns the previous topology when it differs, else None."""
    current = describe(strategy, train.gradient_accumulation_steps)
    path = os.path.join(model_dir, TOPOLOGY_FILE)
    previous = None
    if resumed_from is not None and tf.io.gfile.exists(path):
        try:
            with tf.io.gfile.GFile(path) as f:
                recorded = json.loads(f.read())
            previous = {k: recorded[k] for k in current}
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            logging.warning("%s cannot be read (%s): the previous topology is unknown.",
                            path, e)
    changed = previous is not None and previous != current
    if changed:
        logging.warning("Resuming at step %d across a topology change: the run had %s, it now "
                        "has %s. Dropout masks, data order and optimizer state do not depend "
                        "on it; the order of float sums does (rounding).", resumed_from,
                        _text(previous), _text(current))
    if write:
        write_json_atomic(path, dict(current, step=resumed_from or 0))
    return previous if changed else None
