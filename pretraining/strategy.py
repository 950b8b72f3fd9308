"""The distribution strategy: made from a flag, and what the trainer asks of it.

`create_strategy` turns `--strategy` into a `tf.distribute.Strategy`; call it
from `main()`, before any other TensorFlow op: splitting the CPU into logical
devices and connecting to a TPU must happen first. Then: which process is the
chief (`chief_and_worker`), how many hosts (`num_hosts`, for the batch
arithmetic the trainer logs) and whether any worker wants to stop (`StopVote`).
"""

import json
import os

import keras
import tensorflow as tf
from absl import logging

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def split_cpu(num_logical_cpus: int):
    """Splits the first CPU into `num_logical_cpus` logical devices (for testing
    MirroredStrategy on a machine without GPUs). Must run before any TF op."""
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) == num_logical_cpus:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_logical_cpus)
    except RuntimeError as e:
        raise ValueError(f"--num_logical_cpus={num_logical_cpus} must be applied before "
                         f"TensorFlow initialises its devices ({e}).") from None


def create_strategy(name: str = "default", num_logical_cpus: int = 0,
                    tpu: str = "") -> tf.distribute.Strategy:
    """Creates the strategy named by `--strategy`.

    Args:
        name: str. 'default' (one CPU or GPU), 'mirrored' (all local GPUs, or
            `num_logical_cpus` CPU devices), 'multi_worker' (from `TF_CONFIG`),
            'tpu' (`tpu` = a TPU name, or 'local' on a TPU VM). Defaults to
            'default'.
        num_logical_cpus: int. With 'mirrored' and no GPU, replicas on a split
            CPU; 0 keeps the CPU whole. Defaults to 0.
        tpu: str. TPU name or address for 'tpu'. Defaults to "".
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {list(STRATEGIES)}. Received: {name!r}")
    if num_logical_cpus < 0:
        raise ValueError(f"--num_logical_cpus must be >= 0. Received: {num_logical_cpus}")
    if num_logical_cpus:
        split_cpu(num_logical_cpus)
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = ([d.name for d in gpus] if gpus
                   else [d.name for d in tf.config.list_logical_devices("CPU")])
        strategy = tf.distribute.MirroredStrategy(devices)
    elif name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment "
                             "variable (cluster and task of this worker); see launch/.")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON ({e}). "
                             f"Received: {os.environ['TF_CONFIG']!r}") from None
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        if not tpu:
            raise ValueError("--strategy=tpu needs --tpu=NAME (or --tpu=local on a TPU VM).")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    logging.info("Strategy %s with %d replica(s) in sync", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    return strategy


def is_default_strategy(strategy: tf.distribute.Strategy) -> bool:
    """True for TensorFlow's default (no-op) strategy: one device, no replicas
    to place or reduce across, so a step may run without `strategy.run`."""
    distributed = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy,
                   tf.distribute.TPUStrategy, tf.distribute.OneDeviceStrategy,
                   tf.distribute.experimental.ParameterServerStrategy)
    return strategy.num_replicas_in_sync == 1 and not isinstance(strategy, distributed)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True under MultiWorkerMirroredStrategy (collectives across processes)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def chief_and_worker(strategy: tf.distribute.Strategy) -> tuple[bool, int | None]:
    """(is this process the chief, this worker's id if it is not). The chief
    is the `chief` task, or worker 0 of a cluster without one; every process
    of a single-process strategy is its own chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or not is_multi_worker(strategy):
        return True, None
    jobs = resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief" or (
            "chief" not in jobs and resolver.task_type == "worker" and resolver.task_id == 0):
        return True, None
    return False, resolver.task_id


def num_hosts(strategy: tf.distribute.Strategy) -> int:
    """Processes (hosts) the replicas are spread over: the chief and workers
    of a multi-worker cluster, a TPU slice's hosts, else 1."""
    if is_multi_worker(strategy) and getattr(strategy, "cluster_resolver", None) is not None:
        jobs = strategy.cluster_resolver.cluster_spec().as_dict()
        return max(1, sum(len(jobs.get(job, ())) for job in ("chief", "worker")))
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return strategy.extended.num_hosts
    return 1


class StopVote:
    """Whether any worker wants to stop (one was preempted, say): under
    MultiWorkerMirroredStrategy all workers must checkpoint at the same step
    and stop together, or the others would wait in a collective forever.
    Elsewhere the local flag is the answer.

    Args:
        strategy: tf.distribute.Strategy. The strategy the workers train
            under. Required.

    Call arguments:
        flag: bool. This worker's wish to stop.

    Returns:
        bool: True on every worker when `flag` is set on any of them.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        self._vote = None
        if is_multi_worker(strategy):
            @tf.function
            def vote(value):
                per_replica = strategy.run(lambda: tf.identity(value))
                return strategy.reduce("SUM", per_replica, axis=None)

            self._vote = vote

    def __call__(self, flag: bool) -> bool:
        if self._vote is None:
            return flag
        return bool(self._vote(tf.constant(float(flag))).numpy() > 0)


def log_batch_arithmetic(strategy: tf.distribute.Strategy, global_batch_size: int,
                         accumulation_steps: int) -> None:
    """Logs `global = hosts × replicas per host × micro-batch × accumulation`."""
    hosts, replicas = num_hosts(strategy), strategy.num_replicas_in_sync
    logging.info("TensorFlow %s, Keras %s, %s. Global batch %d = %d host(s) × %d replica(s) "
                 "per host × %d sequences per micro-batch × %d accumulation step(s)",
                 tf.__version__, keras.__version__, type(strategy).__name__, global_batch_size,
                 hosts, replicas // hosts, global_batch_size // (replicas * accumulation_steps),
                 accumulation_steps)


def compiled_train_loop(strategy: tf.distribute.Strategy, step: tf.Variable,
                        keys: tuple, run_step):
    """`train_loop(iterator, num_steps)`: a `tf.function` running `run_step`
    (one update on a global batch, returning per-replica sums) `num_steps`
    times in one call (no host round trip between steps), adding 1 to `step`
    after each; returns the values of `keys` summed over replicas and steps.
    Shared by the pretraining and fine-tuning trainers."""

    @tf.function
    def train_loop(iterator, num_steps):
        totals = tf.zeros([len(keys)])
        for _ in tf.range(num_steps):
            out = run_step(next(iterator))
            totals += tf.stack([strategy.reduce("SUM", out[k], axis=None) for k in keys])
            step.assign_add(1)
        return dict(zip(keys, tf.unstack(totals)))

    return train_loop
