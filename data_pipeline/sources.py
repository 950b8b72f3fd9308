"""Where documents come from: text, one-document-per-line, JSONL (plain or
`.gz`) and TFDS datasets, with optional sentence splitting.

Formats (`--input_format`):
  text   one sentence per line, blank line between documents (the corpus
         format of `corpus.py`)
  lines  one document per line
  jsonl  one JSON object per line; the document is its `text_field`
  tfds   a prepared TFDS dataset by name, read with `download=False`

Every document is a non-empty list of sentence strings. With
`split_sentences`, text is split after . ! ? (before an upper-case letter,
digit or opening quote) and after the Chinese 。！？ (a closing quote stays
with its sentence).
"""

import dataclasses
import gzip
import io
import json
import os
import re
import zlib
from typing import Iterator

from data_pipeline import conditions
from data_pipeline import corpus

INPUT_FORMATS = ("text", "lines", "jsonl", "tfds")
_ZH_END = re.compile(r"([。！？]+[”」』）\"']?)")
_EN_END = re.compile(r"([.!?]+[\"')\]”’]?)\s+(?=[\"'(\[“‘]?[A-Z0-9])")


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """How to read the input.

    Args:
        input_format: str. One of INPUT_FORMATS. Defaults to "text".
        text_field: str. JSONL / TFDS feature holding the text. Defaults to
            "text".
        target_field: str | None. JSONL field of a seq2seq target: each
            document is then exactly [source text, target text]. Defaults
            to None.
        split_sentences: bool. Split document text into sentences (lines are
            always split apart). Defaults to False.
        tfds_data_dir: str | None. TFDS data directory. Defaults to None.
        tfds_split: str. TFDS split. Defaults to "train".
        condition_field: str | None. JSONL field / TFDS feature holding
            each document's condition (see `conditions`). Defaults to None.
        condition_from_path: str | None. Regex with one capture group: each
            file's label, searched in its path. Defaults to None.
        condition_labels: tuple[str, ...] | None. Class labels in id order;
            other labels are refused. Defaults to None (the sorted labels
            found).
    """

    input_format: str = "text"
    text_field: str = "text"
    target_field: str | None = None
    split_sentences: bool = False
    tfds_data_dir: str | None = None
    tfds_split: str = "train"
    condition_field: str | None = None
    condition_from_path: str | None = None
    condition_labels: tuple | None = None

    def __post_init__(self):
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"--input_format must be one of "
                             f"{list(INPUT_FORMATS)}. Received: "
                             f"input_format={self.input_format!r}")
        conditions.check_flags(self.condition_field, self.condition_from_path,
                               self.condition_labels, self.input_format)


def split_sentences(text: str) -> list[str]:
    """Splits English and Chinese text into sentences (rule based)."""
    text = _ZH_END.sub("\\1\n", text)
    text = _EN_END.sub("\\1\n", text)
    return [s.strip() for s in text.split("\n") if s.strip()]


def text_to_sentences(text: str, split: bool) -> list[str]:
    """A document's text -> sentences: one per non-empty line, each further
    split with `split_sentences` when `split`."""
    out = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            out.extend(split_sentences(line) if split else [line])
    return out


class ReadProgress:
    """How far `read_documents` has read, for the build's ETA.

    `done` counts input bytes read from disk (compressed bytes for `.gz`
    files) or TFDS examples; `total` is the input files' size on disk or the
    split's number of examples, None when unknown.
    """

    def __init__(self):
        self.total = None
        self.done = 0

    @property
    def fraction(self) -> float | None:
        """Fraction read so far, or None without a total."""
        if not self.total:
            return None
        return min(self.done / self.total, 1.0)


class _URLReader(io.RawIOBase):
    """A `tf.io.gfile.GFile` (gs://, ram://) as a raw binary stream."""

    def __init__(self, path: str):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        super().__init__()
        self._file = tf.io.gfile.GFile(path, "rb")

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        data = self._file.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_binary(path: str):
    """A local file, or a URL (`gs://…`) through `tf.io.gfile`."""
    if "://" in path:
        return io.BufferedReader(_URLReader(path))
    return open(path, "rb")  # pylint: disable=consider-using-with


def _size(path: str) -> int:
    if "://" in path:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf.io.gfile.stat(path).length
    return os.path.getsize(path)


def _lines(path: str, progress: ReadProgress | None = None
           ) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text or .gz file, errors naming the file;
    `progress.done` advances by the bytes read from disk (compressed for
    .gz)."""
    base = progress.done if progress else 0
    try:
        with _open_binary(path) as raw:
            stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
            with io.TextIOWrapper(stream, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if progress:
                        progress.done = base + raw.tell()
                    yield number, line
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ValueError(f"Input file {path!r} is not a readable gzip file "
                         f"({e}). Re-compress it or drop the .gz suffix.") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"Input file {path!r} is not UTF-8 text ({e}). "
                         "Convert it to UTF-8.") from e


def _field(record, name: str, path: str, number: int) -> str:
    if not isinstance(record, dict) or name not in record:
        keys = sorted(record) if isinstance(record, dict) else []
        raise ValueError(f"{path}:{number} has no field {name!r} (fields: "
                         f"{keys}). Pass --text_field/--target_field naming "
                         "the field that holds the text.")
    if not isinstance(record[name], str):
        raise ValueError(f"{path}:{number} field {name!r} must be a string. "
                         f"Received: {type(record[name]).__name__}")
    return record[name]


def _file_documents(path: str, config: SourceConfig,
                    progress: ReadProgress | None = None
                    ) -> Iterator[tuple[list[str], object, str]]:
    """(sentences, raw condition or None, where) of each document."""
    condition = None
    if config.condition_from_path:
        condition = conditions.path_label(config.condition_from_path, path)
    if config.input_format == "text":
        for document in corpus.documents_from_lines(
                line for _, line in _lines(path, progress)):
            yield document, condition, path
        return
    for number, line in _lines(path, progress):
        if not line.strip():
            continue
        if config.input_format == "jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number} is not valid JSON ({e}). "
                                 "--input_format=jsonl expects one JSON object "
                                 "per line.") from e
            text = _field(record, config.text_field, path, number)
            if config.condition_field:
                condition = conditions.record_value(
                    record, config.condition_field, f"{path}:{number}")
            if config.target_field:
                target = _field(record, config.target_field, path, number)
                if " ".join(text.split()) and " ".join(target.split()):
                    yield ([" ".join(text.split()), " ".join(target.split())],
                           condition, f"{path}:{number}")
                continue
        else:
            text = line
        sentences = text_to_sentences(text, config.split_sentences)
        if sentences:
            yield sentences, condition, f"{path}:{number}"


def tfds_documents(name: str, config: SourceConfig,
                   progress: ReadProgress | None = None
                   ) -> Iterator[tuple[list[str], object, str]]:
    """(sentences, raw condition or None, where) of each document of a
    prepared TFDS dataset (no download, no GCS).

    Args:
        name: str. Dataset name (`name` or `name/config`); `text_folder`
            (see `tfds_builder`) is registered here.
        config: SourceConfig. `tfds_data_dir`, `tfds_split`, `text_field`.
        progress: ReadProgress | None. Gets the split's number of examples
            and the examples read. Defaults to None.
    """
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    from data_pipeline import tfds_builder  # noqa: F401  (registers)
    try:
        ds, info = tfds.load(name, split=config.tfds_split,
                             data_dir=config.tfds_data_dir, download=False,
                             try_gcs=False, with_info=True)
    except Exception as e:  # TFDS raises many kinds; name them all here.
        raise ValueError(
            f"TFDS dataset {name!r} (split {config.tfds_split!r}) cannot be "
            f"loaded from --tfds_data_dir={config.tfds_data_dir!r} without "
            f"downloading: {type(e).__name__}: {e}. Prepare it first "
            "(e.g. `tfds build`, or for text files `python -m "
            "data_pipeline.prepare_tfds --input=GLOB --name=NAME`).") from e
    if config.text_field not in ds.element_spec:
        raise ValueError(f"TFDS dataset {name!r} has no feature --text_field="
                         f"{config.text_field!r} (features: "
                         f"{sorted(ds.element_spec)}).")
    field = config.condition_field
    if field and field not in ds.element_spec:
        raise ValueError(f"TFDS dataset {name!r} has no feature "
                         f"--condition_field={field!r} (features: "
                         f"{sorted(ds.element_spec)}).")
    if progress:
        try:
            progress.total = int(info.splits[config.tfds_split].num_examples)
        except Exception:  # pylint: disable=broad-except  (no ETA then)
            progress.total = None
    for number, example in enumerate(tfds.as_numpy(ds)):
        if progress:
            progress.done += 1
        text = example[config.text_field]
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        sentences = text_to_sentences(str(text), config.split_sentences)
        if sentences:
            yield (sentences, example[field] if field else None,
                   f"TFDS {name!r} {config.tfds_split} example {number}")


def read_documents(inputs, config: SourceConfig,
                   progress: ReadProgress | None = None
                   ) -> Iterator[list[str]]:
    """Streams documents from files (sorted, globs) or a TFDS dataset name.

    Args:
        inputs: str | list[str]. Globs (comma-separated), or a TFDS name.
        config: SourceConfig. Format and options.
        progress: ReadProgress | None. Updated as the input is read (its
            total: the files' size on disk, or the TFDS split's examples).
            Defaults to None.
    """
    for sentences, _, _ in read_conditioned_documents(inputs, config,
                                                      progress):
        yield sentences


def read_conditioned_documents(inputs, config: SourceConfig,
                               progress: ReadProgress | None = None
                               ) -> Iterator[tuple[list[str], object, str]]:
    """As `read_documents`, each document as (sentences, its raw condition
    (None without a condition flag), where it was read: `file:line`, the
    file, or the TFDS example)."""
    if config.input_format == "tfds":
        name = inputs if isinstance(inputs, str) else ",".join(inputs)
        yield from tfds_documents(name.strip(), config, progress)
        return
    paths = corpus.list_files(inputs)
    if progress:
        progress.total = sum(_size(p) for p in paths)
    for path in paths:
        yield from _file_documents(path, config, progress)


def describe(inputs, config: SourceConfig) -> str:
    """One line for the manifest's `source` field."""
    extra = ""
    if config.input_format in ("jsonl", "tfds"):
        extra = f", field {config.text_field!r}"
    if config.input_format == "tfds":
        extra += f", split {config.tfds_split!r}"
    if config.split_sentences:
        extra += ", sentence split"
    if config.condition_field:
        extra += f", condition field {config.condition_field!r}"
    if config.condition_from_path:
        extra += f", condition from path {config.condition_from_path!r}"
    return f"{config.input_format}: {inputs}{extra}"
