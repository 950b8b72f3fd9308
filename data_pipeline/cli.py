"""How the data_pipeline command-line tools end on bad input.

The same contract as `pretraining.cli.run_or_exit` (this package does not
import `pretraining`): a `ValueError`, `TypeError`, `FileNotFoundError` or
other `OSError` (a full disk, a read-only directory) becomes one line on
stderr, `error: …`, and exit status 2, instead of a traceback.
"""

import sys

USAGE_ERROR = 2


def run_or_exit(fn, *args, **kwargs):
    """Runs `fn(*args, **kwargs)`; bad input or an OS fault exits 2 with one
    line (not logged as well: stderr holds that line only)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, OSError) as e:
        text = " ".join(str(e).split("\n")) if isinstance(e, OSError) else str(e)
        sys.stderr.write(f"error: {text}\n")
        sys.exit(USAGE_ERROR)
