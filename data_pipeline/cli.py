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

`pretraining` imports this module; this package never imports `pretraining`.
"""

import re
import sys

from absl import app
from absl import flags

USAGE_ERROR = 2
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


def run(main, define_flags=None) -> None:
    """The entry point of a tool: defines its flags, parses them by this
    module's convention and runs `main(argv)`, whose user errors exit 2."""
    if define_flags is not None:
        define_flags()
    app.run(lambda argv: run_or_exit(main, argv), flags_parser=parse_flags)
