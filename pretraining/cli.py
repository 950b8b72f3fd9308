"""The `pretraining` tools' entry point: `data_pipeline.cli`'s convention
(one place for both packages), with oneDNN set up before TensorFlow loads.

`--help` exits 0 without importing TensorFlow; a bad flag, value, config or
data is one `error: …` line on stderr and exit status 2.

TensorFlow's own chatter is hidden by default: `TF_CPP_MIN_LOG_LEVEL=3` (its
C++ INFO, WARNING and ERROR lines, e.g. oneDNN's `DT_INT64` ERROR line) unless
the user set the variable, and the INFO lines TensorFlow's Python modules
log through absl or `tensorflow` (e.g. 'Sharding callback duration',
collective-op set-up under multi-worker). `--verbosity=1` (`-v 1`) shows them.
TensorFlow's 'oneDNN custom operations are on' line (port.cc) is written
before its log settings are read and shows either way.
"""

import functools
import json
import logging
import os
import sys

from absl import flags
from absl import logging as absl_logging

from data_pipeline import cli as _cli
from data_pipeline.cli import USAGE_ERROR, fail, run_or_exit  # noqa: F401  (the one convention)
from pretraining import cpu_env, preemption


TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"


def run(main, define_flags=None) -> None:
    """Runs a `pretraining` tool: `cpu_env.apply_defaults()` (before
    TensorFlow loads), then `data_pipeline.cli.run(main, define_flags)`, with
    TensorFlow's noise hidden below `--verbosity=1` (`quiet_tensorflow`). A
    run stopped by SIGTERM after its checkpoint (`preemption.Preempted`) logs
    why and exits `preemption.EXIT_PREEMPTED` (75: rerun to resume)."""
    cpu_env.apply_defaults()

    @functools.wraps(main)
    def quiet_main(argv):
        quiet_tensorflow(flags.FLAGS.verbosity)
        try:
            return main(argv)
        except preemption.Preempted as e:
            absl_logging.warning("%s", e)
            sys.exit(preemption.EXIT_PREEMPTED)

    _cli.run(quiet_main, define_flags)


class _TensorFlowInfoFilter(logging.Filter):
    """Drops records under WARNING logged from TensorFlow's own modules."""

    def filter(self, record):
        return (record.levelno >= logging.WARNING
                or f"{os.sep}tensorflow{os.sep}" not in record.pathname)


def quiet_tensorflow(verbosity: int = 0, environ=None) -> bool:
    """Hides TensorFlow's C++ log lines (`TF_CPP_MIN_LOG_LEVEL=3` where unset,
    read when TensorFlow loads) and its Python modules' INFO lines, unless
    `verbosity` >= 1. Returns whether it hid them."""
    if verbosity >= 1:
        return False
    env = os.environ if environ is None else environ
    env.setdefault(TF_LOG_ENV, "3")
    for name in ("absl", "tensorflow"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _TensorFlowInfoFilter) for f in logger.filters):
            logger.addFilter(_TensorFlowInfoFilter())
    return True


def define_experiment_flags(default: str | None) -> None:
    """`--experiment` and `--override`, the flags `train` and `demo` share."""
    flags.DEFINE_string("experiment", default, "Experiment: a JSON file, or a shipped name "
                        "such as demo or smoke_cpu (pretraining/configs/experiments/).")
    flags.DEFINE_multi_string("override", [], "section.field=value, e.g. train.steps=50 "
                              "(repeatable).")


def to_json(summary: dict) -> str:
    """A run summary as one JSON line: NumPy scalars as plain numbers."""
    return json.dumps(summary, default=lambda v: v.item() if hasattr(v, "item") else str(v))
