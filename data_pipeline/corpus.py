"""The corpus file format: UTF-8 text, one sentence per line, blank line
between documents.
"""

import glob
import os
from typing import Iterable, Iterator

from data_pipeline import atomic


def list_files(patterns: str | list[str], recursive: bool = False) -> list[str]:
    """Expands glob patterns into a sorted, de-duplicated list of files.

    Args:
        patterns: str | list[str]. One pattern, a comma-separated string of
            patterns, or a list of patterns.
        recursive: bool. `**` matches any number of directories (as
            `glob.glob(recursive=True)`). Defaults to False.

    Raises:
        ValueError: a pattern matches no file (the pattern is named).
    """
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    if not isinstance(patterns, (list, tuple)):
        raise TypeError("`patterns` must be a str or a list of str. Received: "
                        f"{type(patterns).__name__}")
    patterns = [p.strip() for p in patterns if p.strip()]
    if not patterns:
        raise ValueError("No input pattern given: pass --input=GLOB (comma-"
                         "separated globs of corpus files).")
    files = set()
    for pattern in patterns:
        if "://" in pattern:  # gs://…: through tf.io.gfile
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            matched = [f for f in tf.io.gfile.glob(pattern)
                       if not tf.io.gfile.isdir(f)]
        else:
            matched = [f for f in glob.glob(os.path.expanduser(pattern),
                                            recursive=recursive)
                       if os.path.isfile(f)]
        if not matched:
            raise ValueError(f"--input pattern {pattern!r} matches no file. Check "
                             "the path (globs are allowed, comma-separated"
                             + (", ** recursing" if recursive else "") + ").")
        files.update(matched)
    return sorted(files)


def documents_from_lines(lines: Iterable[str]) -> Iterator[list[str]]:
    """Groups lines into documents: one sentence a line, blank lines between."""
    document = []
    for line in lines:
        line = line.strip()
        if line:
            document.append(line)
        elif document:
            yield document
            document = []
    if document:
        yield document


def write_documents(documents: Iterable[list[str]], path: str) -> dict:
    """Writes documents in the corpus format, atomically.

    Whitespace inside a sentence (including line separators) is collapsed to
    one space; empty sentences and empty documents are dropped.

    Args:
        documents: Iterable[list[str]]. Documents as lists of sentences.
        path: str. Destination file.

    Returns:
        Stats dict: `documents`, `sentences`, `bytes`.
    """
    num_docs = num_sentences = 0
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for document in documents:
                sentences = [" ".join(s.split()) for s in document]
                sentences = [s for s in sentences if s]
                if not sentences:
                    continue
                if num_docs:
                    f.write("\n")
                f.write("\n".join(sentences) + "\n")
                num_docs += 1
                num_sentences += len(sentences)
    return {"documents": num_docs, "sentences": num_sentences,
            "bytes": os.path.getsize(path)}
