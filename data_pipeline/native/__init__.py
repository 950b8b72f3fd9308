"""The compiled dynamic-masking kernel (`dynamic_mask_op.cc`): build and load.

    python -m data_pipeline.native          # compile it (about 30 s, needs g++)

`make install` runs that. The kernel draws exactly the masks of the TF-ops
masker in `data_pipeline.dynamic_masking` (tested) at a fraction of the cost;
without it (no compiler, or built for another TensorFlow version) the input
pipeline uses the TF-ops masker and logs once how to build this one.

The library is named after the TensorFlow version it was compiled against
(`dynamic_mask_op-tf2.21.0.so`), since a custom-op library only loads into
the TensorFlow it was built for.
"""

import inspect
import os
import shlex
import subprocess
import threading

from absl import logging

from data_pipeline import atomic

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "dynamic_mask_op.cc")
BUILD_COMMAND = "python -m data_pipeline.native"

_lock = threading.Lock()
_loaded = {}


def library_path() -> str:
    """Where `build()` writes the library for the installed TensorFlow."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return os.path.join(os.path.dirname(SOURCE),
                        f"dynamic_mask_op-tf{tf.__version__}.so")


def build(output: str | None = None, compiler: str | None = None) -> str:
    """Compiles the kernel against the installed TensorFlow.

    Args:
        output: str | None. Library path. Defaults to `library_path()`.
        compiler: str | None. C++ compiler. Defaults to `$CXX`, else `g++`.

    Returns:
        The library path.

    Raises:
        RuntimeError: the compiler is missing or fails (its output included).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    output = output or library_path()
    compiler = compiler or os.environ.get("CXX", "g++")
    with atomic.atomic_path(output) as tmp:
        command = ([compiler, "-O2", "-DNDEBUG", "-shared", "-fPIC",
                    "-Wno-deprecated-declarations", "-Wno-interference-size"]
                   + tf.sysconfig.get_compile_flags()
                   + [SOURCE, "-o", tmp] + tf.sysconfig.get_link_flags())
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    check=False)
        except FileNotFoundError as e:
            raise RuntimeError(
                f"C++ compiler {compiler!r} not found ({e}). Install g++ (e.g. "
                "`apt-get install g++`) or set CXX to a C++17 compiler.") from e
        if result.returncode != 0:
            raise RuntimeError(
                f"Compiling {SOURCE} failed (exit {result.returncode}):\n"
                f"{shlex.join(command)}\n{result.stderr[-4000:]}")
    return output


def load(path: str | None = None):
    """The loaded op module (`.dynamic_mask(...)`), or None when the library
    for this TensorFlow was not built (logged once, with the fix)."""
    path = path or library_path()
    with _lock:
        if path not in _loaded:
            _loaded[path] = _load(path)
        return _loaded[path]


def _load(path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not os.path.exists(path):
        logging.warning(
            "The compiled dynamic-masking kernel %s is not built; masking with "
            "TensorFlow ops instead (same masks, ~20x slower). Build it with "
            "`%s` (needs g++).", path, BUILD_COMMAND)
        return None
    try:
        library = tf.load_op_library(path)
    except (tf.errors.NotFoundError, OSError) as e:
        logging.warning(
            "Could not load the dynamic-masking kernel %s (%s); masking with "
            "TensorFlow ops instead. Rebuild it with `%s`.", path, e,
            BUILD_COMMAND)
        return None
    # The op's inputs come before its attrs: masked_lm_prob is the sixth
    # input since it became float64 (an attr before).
    op = getattr(library, "dynamic_mask", None)
    parameters = list(inspect.signature(op).parameters) if op else []
    if parameters[5:6] != ["masked_lm_prob"]:  # built from an older source
        logging.warning(
            "The dynamic-masking kernel %s was built from an older source; "
            "masking with TensorFlow ops instead. Rebuild it with `%s`.",
            path, BUILD_COMMAND)
        return None
    return library

