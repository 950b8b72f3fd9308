r"""The built-in sample corpus: English text every Python install carries.

Usage:
  python -m data_pipeline.sample_corpus --output=runs/sample.txt
  python -m data_pipeline.sample_corpus --output=runs/packages.jsonl \
      --packages=4   (or --package_names=asyncio,email)

Documents are the `pydoc_data.topics` help topics and the docstrings of the
standard library (modules, classes, functions), read with `ast` without
importing any module. Output is deterministic for a given Python install.

With --packages=N the output is JSONL instead, for conditioned records: one
docstring per line, `{"text": its sentences one per line, "package": the
top-level package of its module}` (`asyncio/events.py` -> `asyncio`), for
the N packages with the most sentences, or the --package_names given
(`write_package_corpus`); build with `--input_format=jsonl
--condition_field=package`.

Exit status: 0 done; 2 bad flag (one line on stderr).
"""

import ast
import collections
import json
import os
import re
import sysconfig
import warnings
from typing import Iterator

from absl import app
from absl import flags

from data_pipeline import atomic
from data_pipeline import cli
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


def package_documents(packages=None) -> Iterator[tuple[str, list[str]]]:
    """Yields `(top-level package, sentences)` for every docstring of a
    standard-library module inside a package (`email/mime/text.py` ->
    `email`), in `sample_documents`' file order; top-level modules and
    help topics are left out.

    Args:
        packages: Collection[str] | None. Only these packages (the others'
            files are not read). Defaults to None (all).
    """
    root = sysconfig.get_paths()["stdlib"]
    for path in _stdlib_files():
        package, sep, _ = os.path.relpath(path, root).partition(os.sep)
        if not sep or (packages is not None and package not in packages):
            continue
        for doc in _docstrings(path):
            sentences = clean_text(doc)
            if sentences:
                yield package, sentences


def write_package_corpus(path: str, num_packages: int = 4,
                         packages=None) -> dict:
    """Writes the docstrings of the `num_packages` packages with the most
    sentences (ties by name), or of the given `packages`, as JSONL, one
    docstring per line: `{"text": sentences joined by newlines, "package":
    name}`.

    Args:
        path: str. Destination file (written atomically).
        num_packages: int. Packages kept (>= 1) when `packages` is None.
            Defaults to 4.
        packages: list[str] | None. These packages (each must have a
            docstring). Defaults to None (the `num_packages` largest).

    Returns:
        Stats dict: `documents`, `sentences`, `bytes` and `packages` (name
        -> documents).
    """
    if isinstance(num_packages, bool) or not isinstance(num_packages, int) \
            or num_packages < 1:
        raise ValueError(f"--packages must be an int >= 1. Received: "
                         f"packages={num_packages!r}")
    documents = list(package_documents(packages))
    sentences = collections.Counter()
    for package, doc in documents:
        sentences[package] += len(doc)
    if packages is not None:
        missing = sorted(set(packages) - set(sentences))
        if missing:
            raise ValueError(
                f"--package_names={','.join(packages)!r}: {missing} have no "
                "docstring in this Python's standard library (packages: "
                "folders of it, e.g. asyncio, email, json).")
    ranked = sorted(sentences.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = {package for package, _ in ranked[:num_packages]}
    if packages is not None:
        kept = set(packages)
    rows = [(package, doc) for package, doc in documents if package in kept]
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for package, doc in rows:
                f.write(json.dumps({"text": "\n".join(doc),
                                    "package": package}) + "\n")
    return {"documents": len(rows),
            "sentences": sum(len(doc) for _, doc in rows),
            "bytes": os.path.getsize(path),
            "packages": dict(sorted(collections.Counter(
                package for package, _ in rows).items()))}


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_string("output", None, "File to write.", required=True)
    flags.DEFINE_integer("packages", 0, "0: the whole sample in the corpus "
                         "format; N > 0: JSONL docstrings with their "
                         "top-level `package`, of the N packages with the "
                         "most sentences.")
    flags.DEFINE_list("package_names", None, "JSONL docstrings of these "
                      "packages (e.g. asyncio,email) instead of --packages.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    output = flags.FLAGS.output
    if flags.FLAGS.packages < 0:
        raise ValueError(f"--packages must be >= 0 (0: the whole sample). "
                         f"Received: packages={flags.FLAGS.packages}")
    names = flags.FLAGS.package_names
    if names or flags.FLAGS.packages:
        stats = write_package_corpus(output, flags.FLAGS.packages or 1, names)
    else:
        stats = write_sample_corpus(output)
    print(f"{output}: {json.dumps(stats)}")


if __name__ == "__main__":
    cli.run(main, define_flags)
