"""One function that turns a flag into a `tf.distribute.Strategy`.

Call it from `main()`, before any other TensorFlow op: splitting the CPU into
logical devices and connecting to a TPU must happen first.
"""

import json
import os

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
        name: 'default' (one CPU or GPU), 'mirrored' (all local GPUs, or
            `num_logical_cpus` CPU devices), 'multi_worker' (from `TF_CONFIG`),
            'tpu' (`tpu` = a TPU name, or 'local' on a TPU VM).
        num_logical_cpus: int. With 'mirrored' and no GPU, replicas on a split CPU.
        tpu: str. TPU name or address for 'tpu'.
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
