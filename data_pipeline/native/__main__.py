"""Compiles the dynamic-masking kernel against the installed TensorFlow,
next to its source: `python -m data_pipeline.native`.

Exit status: 0 built; 2 a bad flag or a file that cannot be written (one
line on stderr); 1 the compiler is missing or failed (its output follows).
"""
import sys

from data_pipeline import cli


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]} (this tool takes no arguments).")
    from data_pipeline import native  # pylint: disable=import-outside-toplevel
    path = native.library_path()
    try:
        native.build(path)
    except RuntimeError as e:  # the compiler's own output: several lines, exit 1
        sys.stderr.write(f"error: {e}\n")
        sys.exit(1)
    except OSError as e:
        raise OSError(f"cannot write {path} ({e}). Run this as the user who installed the "
                      "package, or install it editable (`pip install -e .`) in a directory "
                      "you own.") from None
    sys.stdout.write(f"built {path}\n")


cli.run(main)
