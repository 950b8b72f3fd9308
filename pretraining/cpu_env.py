"""CPU math-library defaults, set by the command-line entry points before
TensorFlow loads.

TensorFlow enables its oneDNN kernels by default only on some Intel CPUs;
elsewhere (e.g. AMD EPYC) its matmuls run on Eigen. Measured on a 2-core AMD
EPYC (AVX2) VM, TF 2.21: a 4096x4096 fp32 matmul at 81 GFLOP/s with Eigen and
150 GFLOP/s with `TF_ENABLE_ONEDNN_OPTS=1` (NumPy/OpenBLAS: 137-166); the
config-S train step under XLA went from ~20 to ~24-27 sequences/s. Both knobs
are TensorFlow's documented environment variables:

* `TF_ENABLE_ONEDNN_OPTS=1`: oneDNN kernels (read once, when TensorFlow loads).
* `XLA_FLAGS=--xla_cpu_use_onednn=true`: XLA:CPU may call oneDNN for dots.

A value the user already set always wins, e.g. `TF_ENABLE_ONEDNN_OPTS=0` keeps
Eigen. They change CPU kernels only; GPU and TPU math is unaffected.

The XLA flag is set only for TensorFlow 2.21 and later: XLA:CPU in TF 2.20
fails to compile the train step's gradient matmuls with it ("Unsupported oneDNN
Dot op variation ... grad_x"), measured here; its oneDNN kernels outside XLA
are fine.
"""

import importlib.metadata
import os
import sys

from absl import logging

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
XLA_ONEDNN_FLAG = "--xla_cpu_use_onednn=true"


# The first XLA whose oneDNN dots compile our step (TF 2.20's do not).
XLA_ONEDNN_SINCE = (2, 21)
# The names TensorFlow's wheels install under (one per build).
_TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-tpu", "tensorflow-intel",
                     "tf-nightly", "tf-nightly-cpu")


def installed_tensorflow_version() -> tuple[int, int] | None:
    """(major, minor) of the installed TensorFlow, read from the package
    metadata without importing it; None when none is installed."""
    for name in _TF_DISTRIBUTIONS:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        parts = version.split(".")
        try:
            return int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            return None
    return None


def apply_defaults(environ=None, tf_version=None) -> bool:
    """Sets the defaults in `environ` (default `os.environ`) where unset.

    Args:
        environ: dict. The environment to change; `os.environ` when None.
        tf_version: (major, minor). The TensorFlow the defaults are for; the
            installed one when None.

    Returns:
        bool. False when TensorFlow was already imported into this process
        (too late for `TF_ENABLE_ONEDNN_OPTS`; nothing is changed then).
    """
    env = os.environ if environ is None else environ
    if environ is None and "tensorflow" in sys.modules:
        logging.warning("pretraining.cpu_env.apply_defaults() called after "
                        "TensorFlow was imported: CPU defaults (%s=1) not "
                        "applied. Call it first, or set the variable in the "
                        "shell.", ONEDNN_ENV)
        return False
    env.setdefault(ONEDNN_ENV, "1")
    xla_flags = env.get("XLA_FLAGS", "")
    tf_version = tf_version or installed_tensorflow_version()
    if tf_version and tuple(tf_version) < XLA_ONEDNN_SINCE:
        return True
    if "xla_cpu_use_onednn" not in xla_flags:
        env["XLA_FLAGS"] = f"{xla_flags} {XLA_ONEDNN_FLAG}".strip()
    return True
