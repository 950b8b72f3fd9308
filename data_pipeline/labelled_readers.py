"""Labelled examples for fine-tuning: TSV with a header, JSONL, or TFDS
(`labelled_tfds`).

    examples = read_examples("train.tsv", ReadConfig(text_field="sentence"))
    examples = read_examples("tfds:glue/sst2:validation",
                             ReadConfig(text_field="sentence",
                                        tfds_data_dir="tfds_data/"))

An example is a text, an optional pair text and a label, normalised by task:
`single_label` a string (JSON integers and booleans become "3", "true";
TFDS class ids their names),
`multi_label` a tuple of strings (a list field, or one string split on
`label_separator`), `regression` a float. A split read with
`require_labels=False` (a test file) may lack the label column: its labels
are then None. Every bad row is a one-line `ValueError` naming the file,
the line (TFDS: the example index), the field, the value and the fix.
"""

import dataclasses
import gzip
import json
import math
import numbers
import os
import zlib
from typing import Iterator

TASKS = ("single_label", "multi_label", "regression")
INPUT_FORMATS = ("tsv", "jsonl", "tfds")
TFDS_PREFIX = "tfds:"
_SHOWN = 60  # characters of a bad value quoted in an error


@dataclasses.dataclass(frozen=True)
class ReadConfig:
    """How to read labelled examples.

    Args:
        task: str. One of "single_label", "multi_label", "regression".
            Defaults to "single_label".
        text_field: str. TSV column / JSONL field / TFDS feature of the
            text. Defaults to "text".
        text_pair_field: str | None. Column / field of the second text of a
            sentence pair; None for single sentences. Defaults to None.
        label_field: str. Column / field of the label. Defaults to "label".
        label_separator: str | None. Multi-label only: the labels of a
            string field are joined by this (e.g. ","); a list field needs
            none. Defaults to None.
        input_format: str | None. "tsv", "jsonl" or "tfds"; None infers it
            from the name (`tfds:NAME[:SPLIT]`, `*.jsonl[.gz]`/`*.json`,
            anything else TSV). Defaults to None.
        tfds_data_dir: str | None. TFDS data directory (nothing is ever
            downloaded). Defaults to None (TFDS's default).
    """

    task: str = "single_label"
    text_field: str = "text"
    text_pair_field: str | None = None
    label_field: str = "label"
    label_separator: str | None = None
    input_format: str | None = None
    tfds_data_dir: str | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {list(TASKS)}. "
                             f"Received: task={self.task!r}")
        if self.input_format is not None and self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {list(INPUT_FORMATS)} "
                             f"or None. Received: input_format={self.input_format!r}")
        if self.label_separator is not None and (
                self.task != "multi_label" or not self.label_separator):
            raise ValueError("--label_separator is for --task=multi_label and must "
                             f"be non-empty. Received: label_separator="
                             f"{self.label_separator!r} with task={self.task!r}")
        for name in ("text_field", "label_field"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"--{name} must be a non-empty string. "
                                 f"Received: {name}={getattr(self, name)!r}")


@dataclasses.dataclass
class LabelledExamples:
    """The examples of one split, in file order.

    Args:
        source: str. Where they were read from (for messages). Required.
        texts: list[str]. First texts. Required.
        pairs: list[str] | None. Second texts, or None (single sentences).
            Required.
        labels: list | None. Normalised labels (see the module docstring),
            or None for an unlabelled split. Required.
        lines: list[int]. Line number (TFDS: example index) of each example.
            Required.
        task: str. The task the labels were read for. Defaults to
            "single_label".
        where: str. "line" or "example": what `lines` count. Defaults to
            "line".
    """

    source: str
    texts: list
    pairs: list | None
    labels: list | None
    lines: list
    task: str = "single_label"
    where: str = "line"

    def __len__(self):
        return len(self.texts)

    def locate(self, index: int) -> str:
        """"file:line" (or "name example i") of example `index`."""
        if self.where == "line":
            return f"{self.source}:{self.lines[index]}"
        return f"{self.source} example {self.lines[index]}"


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def parse_label(value, config: ReadConfig, where: str):
    """One raw label value -> its normalised form for `config.task`.

    Raises:
        ValueError: the value does not fit the task (naming `where`).
    """
    field = config.label_field
    if config.task == "regression":
        number = None
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, (str, bytes)):
            try:
                number = float(value)
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            raise ValueError(f"{where}: field {field!r} must be a finite number for "
                             f"--task=regression. Received: {_shown(value)}. Fix the "
                             "row or pick the numeric column with --label_field.")
        return number
    if config.task == "multi_label":
        if isinstance(value, str) and config.label_separator is not None:
            return tuple(p.strip() for p in value.split(config.label_separator)
                         if p.strip())
        if isinstance(value, (list, tuple)) and all(
                isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            return tuple(str(v) for v in value)
        hint = ("a list of label names, or a string joined by --label_separator "
                "(e.g. --label_separator=,)" if config.label_separator is None else
                f"a list of label names or a string joined by {config.label_separator!r}")
        raise ValueError(f"{where}: multi-label field {field!r} must be {hint}. "
                         f"Received: {_shown(value)}")
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # JSON true/false
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    raise ValueError(f"{where}: label field {field!r} must be a string or an "
                     f"integer for --task=single_label. Received: {_shown(value)}. "
                     "Use --task=multi_label for lists, --task=regression for numbers.")


def _input_format(name: str, config: ReadConfig) -> str:
    if config.input_format:
        return config.input_format
    if name.startswith(TFDS_PREFIX):
        return "tfds"
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        return "jsonl"
    return "tsv"


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 text or `.gz` file (a
    leading byte-order mark is dropped); errors name the file and line."""
    if not os.path.isfile(path):
        raise ValueError(f"Labelled data file {path!r} does not exist: pass an "
                         "existing TSV/JSONL file, or tfds:NAME[:SPLIT].")
    number = 0
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            for number, raw in enumerate(f, 1):
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}:{number} is not UTF-8 (byte {e.start} of the line: "
                         f"{e.reason}): convert the file, e.g. `iconv -f latin1 -t "
                         "utf-8`.") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{path} is not a readable gzip file ({e}): re-compress it "
                         "or drop the .gz suffix.") from None


class Collector:
    """Accumulates rows (for every reader), checking the pair field is in every row or none."""

    def __init__(self, source: str, config: ReadConfig, require_labels: bool,
                 where: str = "line"):
        self.config = config
        self.out = LabelledExamples(source, [], [] if config.text_pair_field else None,
                                    [] if require_labels else None, [],
                                    config.task, where)

    def add(self, number: int, text, pair, label, where: str) -> None:
        config = self.config
        if not isinstance(text, str):
            raise ValueError(f"{where}: text field {config.text_field!r} must be a "
                             f"string. Received: {_shown(text)}")
        out = self.out
        out.texts.append(text)
        out.lines.append(number)
        if config.text_pair_field:
            if pair is None:
                raise ValueError(
                    f"{where}: pair field {config.text_pair_field!r} is missing in "
                    f"this row but present in others (e.g. {out.locate(0)}): give "
                    "every row a pair text, or drop --text_pair_field.")
            if not isinstance(pair, str):
                raise ValueError(f"{where}: pair field {config.text_pair_field!r} "
                                 f"must be a string. Received: {_shown(pair)}")
            out.pairs.append(pair)
        if out.labels is not None:
            out.labels.append(parse_label(label, config, where))

    def result(self) -> LabelledExamples:
        if not self.out.texts:
            raise ValueError(f"Labelled split {self.out.source!r} holds no example: "
                             "pass a non-empty file or split.")
        return self.out


def read_tsv(path: str, config: ReadConfig, *, require_labels: bool = True
             ) -> LabelledExamples:
    """Reads a tab-separated file whose first line names the columns (GLUE's
    layout; no quoting, as Google's `run_classifier.py` reads it).

    A test file (`require_labels=False`) may lack the label column.
    """
    lines = _lines(path)
    header = next(lines, (1, ""))[1].split("\t")
    if header == [""]:
        raise ValueError(f"Labelled split {path!r} holds no example (its first line, "
                         "the header naming the columns, is empty).")
    columns = {name.strip(): i for i, name in enumerate(header)}
    wanted = [config.text_field, config.text_pair_field]
    label_index = columns.get(config.label_field)
    if require_labels or label_index is not None:
        wanted.append(config.label_field)
    flags = {config.text_field: "--text_field", config.label_field: "--label_field",
             config.text_pair_field: "--text_pair_field"}
    for name in wanted:
        if name is not None and name not in columns:
            raise ValueError(f"{path}:1: no column {name!r} (columns: "
                             f"{list(columns)}). Pass {flags[name]} naming the "
                             "column.")
    collector = Collector(path, config, label_index is not None)
    text_index = columns[config.text_field]
    pair_index = columns.get(config.text_pair_field or "")
    for number, line in lines:
        if not line.strip():
            continue
        row = line.split("\t")
        where = f"{path}:{number}"
        if len(row) != len(header):
            raise ValueError(f"{where}: {len(row)} tab-separated fields, the "
                             f"header has {len(header)}. Fix the row (a tab "
                             "inside a text must be removed).")
        collector.add(number, row[text_index],
                      None if pair_index is None else row[pair_index],
                      None if label_index is None else row[label_index], where)
    return collector.result()


def read_jsonl(path: str, config: ReadConfig, *, require_labels: bool = True
               ) -> LabelledExamples:
    """Reads one JSON object per line (`.gz` too). A test file
    (`require_labels=False`) may lack the label field in every row."""
    collector = None
    for number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} is not valid JSON ({e.msg}): one JSON "
                             "object per line is expected.") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: a JSON object is expected. Received: "
                             f"{_shown(record)}")
        if collector is None:
            labelled = require_labels or config.label_field in record
            collector = Collector(path, config, labelled)
        for name, flag, needed in (
                (config.text_field, "--text_field", True),
                (config.label_field, "--label_field", collector.out.labels is not None)):
            if needed and name not in record:
                raise ValueError(f"{where}: no field {name!r} (fields: "
                                 f"{sorted(record)}). Pass {flag} naming the field.")
        pair = None
        if config.text_pair_field:
            pair = record.get(config.text_pair_field)
            if pair is None and not collector.out.texts:
                raise ValueError(
                    f"{where}: no field {config.text_pair_field!r} (fields: "
                    f"{sorted(record)}). Pass --text_pair_field naming the field, "
                    "or drop it for single sentences.")
        collector.add(number, record[config.text_field], pair,
                      record.get(config.label_field), where)
    if collector is None:
        raise ValueError(f"Labelled split {path!r} holds no example: pass a "
                         "non-empty file.")
    return collector.result()


def read_examples(name: str, config: ReadConfig, *, require_labels: bool = True
                  ) -> LabelledExamples:
    """Reads one split: a TSV or JSONL file, or `tfds:NAME[:SPLIT]`.

    Args:
        name: str. File path, or `tfds:NAME[:SPLIT]` (e.g. `tfds:glue/sst2:validation`).
        config: ReadConfig. Fields, task and format.
        require_labels: bool. False for a test split, which may be
            unlabelled. Defaults to True.

    Returns:
        LabelledExamples.

    Raises:
        ValueError: a missing file, column or field; an empty split; a label
            that does not fit the task; a pair text in some rows only.
    """
    kind = _input_format(name, config)
    if kind == "tfds":
        from data_pipeline import labelled_tfds  # pylint: disable=import-outside-toplevel
        return labelled_tfds.read_tfds(name, config, require_labels=require_labels)
    reader = read_tsv if kind == "tsv" else read_jsonl
    return reader(name, config, require_labels=require_labels)

