"""One convention for every command-line tool, in both packages.

Each `python -m …` tool defines its flags in one function (`define_flags`,
called only when it runs as a program, so importing the module adds no
global flags) and ends with `cli.run(main, define_flags)`
(`pretraining.cli.run` for the `pretraining` tools). Then:

- `--help` (`-h`, `--helpshort`; `--helpfull` for absl's flags too) prints
  the module docstring and the flags on stdout and exits 0, before anything
  heavy is imported: the tools import TensorFlow inside `main`.
- A bad flag or value, absl's own parse errors included (an unknown flag, a
  missing required flag, a value outside an enum), is one line on stderr,
  `error: …`, naming the flag and the value, and exit status 2.
- In `main`, a `ValueError`, `TypeError`, `OSError` (a full disk, a
  read-only directory) or `FloatingPointError` (a non-finite loss) is one
  line on stderr, printed once, and exit status 2 instead of a traceback.

TensorFlow's own chatter is hidden by default: `TF_CPP_MIN_LOG_LEVEL=3` (its
C++ INFO, WARNING and ERROR lines, e.g. oneDNN's `DT_INT64` ERROR line) unless
the user set the variable, and the INFO lines TensorFlow's Python modules
log through absl or `tensorflow` (e.g. 'Sharding callback duration',
collective-op set-up under multi-worker). `--verbosity=1` (`-v 1`) shows them.
TensorFlow's 'oneDNN custom operations are on' line (port.cc) is written
before its log settings are read and shows either way.

`pretraining` imports this module; this package never imports `pretraining`.
"""

import logging
import os
import re
import sys

from absl import app
from absl import flags

USAGE_ERROR = 2
TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError)
_HELP = {"-h": True, "-help": True, "--help": True, "-?": True, "--helpshort": True,
         "-helpshort": True, "--helpfull": False, "-helpfull": False}


def fail(message) -> None:
    """Writes `error: message` as one line on stderr and exits 2."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    sys.stderr.write(f"error: {text}\n")
    sys.exit(USAGE_ERROR)


def run_or_exit(fn, *args, **kwargs):
    """Runs `fn(*args, **kwargs)`; a user error (`USER_ERRORS`, or absl's
    `UsageError`) becomes one line on stderr and exit status 2."""
    try:
        return fn(*args, **kwargs)
    except (*USER_ERRORS, app.UsageError) as e:
        fail(e)


def parse_flags(argv: list[str]) -> list[str]:
    """absl `flags_parser`: `--help` prints the usage and exits 0; a flag
    error is one line and exit 2. Returns the arguments left after the flags."""
    options = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    for arg in options:
        if arg in _HELP:
            app.usage(shorthelp=_HELP[arg], writeto_stdout=True)
            sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        missing = re.findall(r"Flag --(\w+) must have a value other than None", str(e))
        text = (f"missing required flag(s): {', '.join('--' + m for m in missing)}" if missing
                else str(e).rstrip("."))
        fail(f"{text} (python -m {_program()} --help lists the flags).")


def _program() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else sys.argv[0]


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


def run(main, define_flags=None) -> None:
    """The entry point of a tool: defines its flags, parses them by this
    module's convention and runs `main(argv)`, whose user errors exit 2, with
    TensorFlow's noise hidden below `--verbosity=1` (`quiet_tensorflow`: the
    tools import TensorFlow inside `main`)."""
    if define_flags is not None:
        define_flags()

    def quiet_main(argv):
        quiet_tensorflow(flags.FLAGS.verbosity)
        return run_or_exit(main, argv)

    app.run(quiet_main, flags_parser=parse_flags)
