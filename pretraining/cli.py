"""Small helpers shared by the command-line entry points."""

import sys

from absl import logging


def run_or_exit(fn, *args, **kwargs):
    """Runs `fn`; a `ValueError`/`TypeError` (bad flag, config or data), a
    `FileNotFoundError` or a `FloatingPointError` (a non-finite loss) becomes a
    one-line message on stderr and exit status 2 instead of a traceback."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as e:
        # FloatingPointError: the trainer's non-finite loss (last checkpoint kept).
        logging.error("%s", e)
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
