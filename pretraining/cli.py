"""The `pretraining` tools' entry point: `data_pipeline.cli`'s convention
(one place for both packages), with oneDNN set up before TensorFlow loads.

`--help` exits 0 without importing TensorFlow; a bad flag, value, config or
data is one `error: …` line on stderr and exit status 2.
"""

import json

from absl import flags

from data_pipeline import cli as _cli
from data_pipeline.cli import USAGE_ERROR, fail, run_or_exit  # noqa: F401  (the one convention)
from pretraining import cpu_env


def run(main, define_flags=None) -> None:
    """Runs a `pretraining` tool: `cpu_env.apply_defaults()` (before
    TensorFlow loads), then `data_pipeline.cli.run(main, define_flags)`."""
    cpu_env.apply_defaults()
    _cli.run(main, define_flags)


def define_experiment_flags(default: str | None) -> None:
    """`--experiment` and `--override`, the flags `train` and `demo` share."""
    flags.DEFINE_string("experiment", default, "Experiment: a JSON file, or a shipped name "
                        "such as demo or smoke_cpu (pretraining/configs/experiments/).")
    flags.DEFINE_multi_string("override", [], "section.field=value, e.g. train.steps=50 "
                              "(repeatable).")


def to_json(summary: dict) -> str:
    """A run summary as one JSON line: NumPy scalars as plain numbers."""
    return json.dumps(summary, default=lambda v: v.item() if hasattr(v, "item") else str(v))
