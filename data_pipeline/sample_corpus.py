"""The built-in sample corpus: English text every Python install carries.

Documents are the `pydoc_data.topics` help topics and the docstrings of the
standard library (modules, classes, functions), read with `ast` without
importing any module. Output is deterministic for a given Python install.
"""

import ast
import os
import re
import sysconfig
import warnings
from typing import Iterator

from data_pipeline import corpus

_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests",
                        "idlelib", "lib2to3", "__pycache__"})
# A sentence ends at . ? or ! (optionally closed by a quote or bracket)
# followed by whitespace and a capital letter or an opening quote.
_SENTENCE_END = re.compile(r"(?<=[.?!])[\"')\]]?\s+(?=[A-Z\"'])")
_RULE_LINE = re.compile(r"^[\W_]+$")


def _paragraphs(text: str) -> Iterator[str]:
    """Yields reflowed prose paragraphs, dropping doctests and code blocks."""
    lines = []
    for raw in text.expandtabs().splitlines():
        stripped = raw.strip()
        code_like = (raw[:1].isspace() or stripped.startswith((">>>", "..."))
                     or bool(_RULE_LINE.match(stripped)))
        if not stripped or code_like:
            if lines:
                yield " ".join(lines)
                lines = []
            continue
        lines.append(stripped)
    if lines:
        yield " ".join(lines)


def clean_text(text: str) -> list[str]:
    """Turns a docstring or help topic into a list of sentences.

    Args:
        text: str. Raw text (docstring or topic).

    Returns:
        Sentences of at least two words, in order.
    """
    sentences = []
    for paragraph in _paragraphs(text):
        paragraph = " ".join(paragraph.split())
        for sentence in _SENTENCE_END.split(paragraph):
            if len(sentence.split()) >= 2:
                sentences.append(sentence)
    return sentences


def _topic_texts() -> Iterator[str]:
    from pydoc_data import topics  # pylint: disable=import-outside-toplevel
    for name in sorted(topics.topics):
        yield topics.topics[name]


def _stdlib_files() -> Iterator[str]:
    root = sysconfig.get_paths()["stdlib"]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def _docstrings(path: str) -> Iterator[str]:
    try:
        with open(path, "rb") as f:
            source = f.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError, UnicodeDecodeError, OSError):
        return
    nodes = [node for node in ast.walk(tree)
             if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                  ast.AsyncFunctionDef))]
    for node in sorted(nodes, key=lambda n: getattr(n, "lineno", 0)):  # source order
        doc = ast.get_docstring(node)
        if doc:
            yield doc


def module_docstrings() -> Iterator[tuple[str, list[str]]]:
    """Yields `(module path relative to the standard library, its docstrings
    in source order)` for the modules `sample_documents` reads, in the same
    order (the labelled sample task of `data_pipeline.sample_task` uses it)."""
    root = sysconfig.get_paths()["stdlib"]
    for path in _stdlib_files():
        yield os.path.relpath(path, root), list(_docstrings(path))


def sample_documents() -> Iterator[list[str]]:
    """Yields the sample corpus documents (lists of sentences).

    Help topics first (sorted by name), then one document per standard-library
    module made of its docstrings in source order (files in sorted order,
    `site-packages`, tests, `idlelib`, `lib2to3`
    skipped).
    """
    for text in _topic_texts():
        sentences = clean_text(text)
        if sentences:
            yield sentences
    for path in _stdlib_files():
        # One module = one document: its docstrings in source order read like
        # an article (module overview, then classes and functions), and give
        # sequences that fill `max_seq_length` instead of mostly padding.
        sentences = [s for doc in _docstrings(path) for s in clean_text(doc)]
        if sentences:
            yield sentences


def write_sample_corpus(path: str) -> dict:
    """Writes the sample corpus to `path` in the corpus-file format.

    Args:
        path: str. Destination file (written atomically).

    Returns:
        Stats dict: `documents`, `sentences`, `bytes`.
    """
    return corpus.write_documents(sample_documents(), path)
