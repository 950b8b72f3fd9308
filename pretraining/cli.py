"""The `pretraining` tools' entry point: `data_pipeline.cli`'s convention
(one place for both packages), with oneDNN set up before TensorFlow loads.

`--help` exits 0 without importing TensorFlow; a bad flag, value, config or
data is one `error: …` line on stderr and exit status 2; TensorFlow's own
chatter is hidden below `--verbosity=1` (see `data_pipeline.cli`).
"""

import functools
import json
import sys

from absl import flags
from absl import logging

from data_pipeline import cli as _cli
from data_pipeline.cli import (  # noqa: F401  (the one convention)
    TF_LOG_ENV, USAGE_ERROR, _TensorFlowInfoFilter, fail, quiet_tensorflow, run_or_exit)
from pretraining import cpu_env, preemption


def run(main, define_flags=None) -> None:
    """Runs a `pretraining` tool: `cpu_env.apply_defaults()` (before
    TensorFlow loads), then `data_pipeline.cli.run(main, define_flags)`
    (TensorFlow's noise hidden below `--verbosity=1`). A run stopped by
    SIGTERM after its checkpoint (`preemption.Preempted`) logs why and exits
    `preemption.EXIT_PREEMPTED` (75: rerun to resume)."""
    cpu_env.apply_defaults()

    @functools.wraps(main)
    def main_or_preempted(argv):
        try:
            return main(argv)
        except preemption.Preempted as e:
            logging.warning("%s", e)
            sys.exit(preemption.EXIT_PREEMPTED)

    _cli.run(main_or_preempted, define_flags)


def define_experiment_flags(default: str | None) -> None:
    """`--experiment` and `--override`, the flags `train` and `demo` share."""
    flags.DEFINE_string("experiment", default, "Experiment: a JSON file, or a shipped name "
                        "such as demo or smoke_cpu (pretraining/configs/experiments/).")
    flags.DEFINE_multi_string("override", [], "section.field=value, e.g. train.steps=50 "
                              "(repeatable).")


def to_json(summary: dict) -> str:
    """A run summary as one JSON line: NumPy scalars as plain numbers."""
    return json.dumps(summary, default=lambda v: v.item() if hasattr(v, "item") else str(v))
