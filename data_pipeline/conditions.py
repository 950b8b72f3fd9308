"""Per-document conditions of a conditioned build: where they come from, the
label vocabulary and how they are stored.

A condition is either a class (a label; records store its id, the label's
index in the manifest's `condition.labels`) or a vector (a list of floats of
one length for every document). Sources (`sources.SourceConfig`):

  --condition_field=NAME      JSONL: the field of each line, a string or
                              integer label, or a list of numbers (a vector);
                              TFDS: the named feature (a ClassLabel keeps the
                              dataset's own label names; a float vector)
  --condition_from_path=RE    text, lines, JSONL files: the one capture group
                              of RE searched in each file's path, a label
  --condition_labels=a,b,c    fixes the label order (ids 0, 1, 2) and refuses
                              any other label; without it the labels are the
                              sorted labels found (numerically when all are
                              integers), read in a first pass over the input

`resolve` turns the flags into a `ConditionSpec` before any record is
written; `ConditionSpec.encode` maps each document's raw value to what its
records store, with a one-line error naming the document.
"""

import dataclasses
import math
import re
from typing import Iterable, Iterator

import numpy as np

from data_pipeline import features

KINDS = features.CONDITION_KINDS


def compile_path_regex(regex: str, flag: str = "--condition_from_path"
                       ) -> re.Pattern:
    """The compiled path regex (of the flag `flag`), which must have exactly
    one capture group (ValueError otherwise)."""
    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise ValueError(f"{flag}={regex!r} is not a valid regular expression "
                         f"({e}). Pass a Python regex with one capture group, "
                         "e.g. '([^/]+)/[^/]+$'.") from e
    if pattern.groups != 1:
        raise ValueError(
            f"{flag}={regex!r} has {pattern.groups} capture groups; it needs "
            "exactly one, the label (use (?:...) for other groups), e.g. "
            "'([^/]+)/[^/]+$' for the file's folder.")
    return pattern


def path_label(regex: str, path: str,
               flag: str = "--condition_from_path") -> str:
    """The label a path regex takes from `path` (its capture group,
    searched anywhere in the path); ValueError when it does not match or
    captures nothing."""
    match = compile_path_regex(regex, flag).search(path)
    if not match or not match.group(1):
        raise ValueError(
            f"{flag}={regex!r} does not match input file {path!r} (or "
            "captures an empty label): every document needs a label. Fix "
            "the regex or leave the file out of --input.")
    return match.group(1)


def record_value(record, field: str, where: str):
    """A JSONL line's raw condition: its `field`, which must be present."""
    if not isinstance(record, dict) or field not in record:
        keys = sorted(record) if isinstance(record, dict) else []
        raise ValueError(
            f"{where} has no condition field {field!r} (fields: {keys}). "
            "Every document needs its condition: add the field, drop the "
            "line, or pass the right --condition_field.")
    return record[field]


def check_flags(field: str | None, from_path: str | None,
                labels: tuple | None, input_format: str) -> None:
    """Refuses inconsistent condition flags (ValueError naming them)."""
    if field and from_path:
        raise ValueError(
            f"--condition_field={field!r} and --condition_from_path="
            f"{from_path!r} are exclusive: pass the one that holds the "
            "condition (a JSONL field or TFDS feature, or the file path).")
    if labels is not None and not (field or from_path):
        raise ValueError(
            f"--condition_labels={','.join(labels)!r} needs --condition_field "
            "or --condition_from_path (where each document's label is).")
    if labels is not None and (not labels or len(set(labels)) != len(labels)
                               or not all(labels)):
        raise ValueError(
            f"--condition_labels={','.join(labels)!r} must list distinct, "
            "non-empty labels, comma-separated.")
    if from_path:
        compile_path_regex(from_path)
        if input_format == "tfds":
            raise ValueError(
                f"--condition_from_path={from_path!r} applies to files, not "
                "--input_format=tfds: use --condition_field=FEATURE.")
    if field and input_format in ("text", "lines"):
        raise ValueError(
            f"--condition_field={field!r} applies to --input_format=jsonl or "
            f"tfds. Received: input_format={input_format!r}; for files use "
            "--condition_from_path=REGEX.")


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Labels sorted: as integers when all are integers, else as strings."""
    labels = set(labels)
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _label(raw, where: str, source: str) -> str | None:
    """A raw class label as a string; None when `raw` is not a label."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    if isinstance(raw, (bool, np.bool_)):
        return None
    if isinstance(raw, (int, np.integer)):
        return str(int(raw))
    if isinstance(raw, str):
        if not raw:
            raise ValueError(f"{where}: condition {source} is an empty label. "
                             "Give every document a non-empty label.")
        return raw
    return None


def _vector(raw) -> list[float] | None:
    """A raw vector as a list of floats; None when `raw` is not one."""
    if isinstance(raw, np.ndarray) and raw.ndim == 1:
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)) or not raw:
        return None
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or
           not math.isfinite(v) for v in raw):
        return None
    return [float(v) for v in raw]


@dataclasses.dataclass(frozen=True)
class ConditionSpec:
    """The condition of a build: what the manifest records and how a
    document's raw value becomes what its records store.

    Args:
        kind: str. "class" or "vector".
        size: int. Number of labels (class) or the vector's length.
        labels: tuple[str, ...]. Class labels in id order; () for vectors.
            Defaults to ().
        source: str. The flag it comes from, for messages (e.g.
            "field 'label'"). Defaults to "".
        raw_names: tuple[str, ...] | None. Names of integer raw values (a
            TFDS ClassLabel's names): raw id i is the label raw_names[i].
            Defaults to None (integers are labels themselves).
    """

    kind: str
    size: int
    labels: tuple = ()
    source: str = ""
    raw_names: tuple | None = None

    def __post_init__(self):
        if self.kind not in KINDS or self.size < 1 or (
                len(self.labels) != (self.size if self.kind == "class" else 0)):
            raise ValueError(f"Invalid condition: kind={self.kind!r}, size="
                             f"{self.size}, labels={list(self.labels)}")

    def to_manifest(self) -> dict:
        """The manifest's `condition` field."""
        return {"kind": self.kind, "size": self.size,
                "labels": list(self.labels)}

    @property
    def length(self) -> tuple[int, str]:
        """The `condition` feature's (length, "int"|"float") on disk."""
        return (1, "int") if self.kind == "class" else (self.size, "float")

    def encode(self, raw, where: str):
        """A document's raw condition -> its class id (int) or vector
        (tuple of floats); ValueError naming `where` and the value."""
        if self.kind == "vector":
            vector = _vector(raw)
            if vector is None:
                raise ValueError(
                    f"{where}: condition {self.source} must be a list of "
                    f"{self.size} finite numbers (a vector condition). "
                    f"Received: {raw!r}")
            if len(vector) != self.size:
                raise ValueError(
                    f"{where}: condition {self.source} has {len(vector)} "
                    f"values; the other documents' vectors have {self.size}. "
                    "Give every document a vector of one length.")
            return tuple(vector)
        if self.raw_names is not None and isinstance(raw, (int, np.integer)):
            if not 0 <= int(raw) < len(self.raw_names):  # TFDS: -1, no label
                raise ValueError(
                    f"{where}: condition {self.source} has no label (class "
                    f"id {int(raw)} of {len(self.raw_names)}). Build from a "
                    "labelled split (--tfds_split).")
            raw = self.raw_names[int(raw)]
        label = _label(raw, where, self.source)
        if label is None:
            raise ValueError(
                f"{where}: condition {self.source} must be a string or integer "
                f"label (the build's labels are classes). Received: {raw!r}")
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(
                f"{where}: condition {self.source} label {label!r} is not "
                f"among --condition_labels={','.join(self.labels)!r}. Add it "
                "there or drop the document.") from None

    def column(self, values: list) -> np.ndarray:
        """Encoded values -> the `condition` column: int64 `[N, 1]` or
        float32 `[N, size]`."""
        if self.kind == "class":
            return np.asarray(values, np.int64).reshape(len(values), 1)
        return np.asarray(values, np.float32).reshape(len(values), self.size)


def scan(raws: Iterable[tuple], source: str,
         labels: tuple | None = None) -> ConditionSpec:
    """The spec of documents' raw conditions (`(raw, where)` pairs, a first
    pass over the input): class labels sorted (`sort_labels`) or in the
    given order (then checked), or vectors of one length.

    Raises:
        ValueError: no documents, a mix of labels and vectors, vectors of
            different lengths, or a label outside `labels`.
    """
    found, first = set(), None
    for raw, where in raws:
        vector = _vector(raw)
        kind = "vector" if vector is not None else "class"
        if kind == "class":
            label = _label(raw, where, source)
            if label is None:
                raise ValueError(
                    f"{where}: condition {source} must be a string or integer "
                    f"label, or a list of numbers (a vector). Received: {raw!r}")
        if first is None:
            first = (kind, len(vector) if vector else 0, where)
        elif kind != first[0]:
            raise ValueError(
                f"{where}: condition {source} is a {kind} but {first[2]}'s is "
                f"a {first[0]}. Give every document the same kind.")
        if kind == "vector" and len(vector) != first[1]:
            raise ValueError(
                f"{where}: condition {source} has {len(vector)} values but "
                f"{first[2]}'s has {first[1]}. Give every document a vector "
                "of one length.")
        if kind == "class":
            found.add(label)
    if first is None:
        raise ValueError(f"No document with a condition {source} was read. "
                         "Check --input.")
    if first[0] == "vector":
        return ConditionSpec("vector", first[1], source=source)
    spec_labels = tuple(labels) if labels else tuple(sort_labels(found))
    spec = ConditionSpec("class", len(spec_labels), spec_labels, source)
    for label in sorted(found - set(spec_labels)):
        spec.encode(label, f"input {source}")  # raises, naming the label
    return spec


def resolve(inputs, config) -> ConditionSpec | None:
    """The build's condition from the source flags, before any record is
    written; None when the build is unconditioned.

    Args:
        inputs: str | list[str]. The build's --input.
        config: sources.SourceConfig. `condition_field`,
            `condition_from_path`, `condition_labels` and the format.
    """
    # pylint: disable=import-outside-toplevel
    from data_pipeline import corpus, sources
    labels = config.condition_labels
    if config.condition_from_path:
        source = f"--condition_from_path={config.condition_from_path!r}"
        paths = corpus.list_files(inputs)
        pattern = compile_path_regex(config.condition_from_path)
        if not any(pattern.search(p) for p in paths):
            raise ValueError(
                f"{source} matches none of the {len(paths)} input files (e.g. "
                f"{paths[0]!r}). Fix the regex: it is searched in each path "
                "as --input lists it.")
        return scan(((path_label(config.condition_from_path, p), p)
                     for p in paths), source, labels)
    if not config.condition_field:
        return None
    source = f"{config.input_format} field {config.condition_field!r}"
    if config.input_format == "tfds":
        spec = _tfds_spec(inputs, config, source)
        if spec is not None:
            return spec
    if labels:  # Known classes: no first pass.
        return ConditionSpec("class", len(labels), tuple(labels), source)
    return scan(((raw, where) for _, raw, where in
                 sources.read_conditioned_documents(inputs, config)),
                source, labels)


def _tfds_spec(inputs, config, source: str) -> ConditionSpec | None:
    """The spec of a TFDS ClassLabel or float-vector feature from the
    dataset's info; None when the info does not say (then the data is
    scanned)."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    from data_pipeline import tfds_builder  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    name = (inputs if isinstance(inputs, str) else ",".join(inputs)).strip()
    try:
        info = tfds.builder(name, data_dir=config.tfds_data_dir).info
    except Exception:  # pylint: disable=broad-except  (reading names the error)
        return None
    field = config.condition_field
    if field not in info.features:
        raise ValueError(
            f"TFDS dataset {name!r} has no feature --condition_field={field!r} "
            f"(features: {sorted(info.features)}).")
    feature = info.features[field]
    if isinstance(feature, tfds.features.ClassLabel):
        names = tuple(feature.names)
        labels = tuple(config.condition_labels or names)
        # A name outside --condition_labels is refused by the first
        # document that has it.
        return ConditionSpec("class", len(labels), labels, source, names)
    shape = tuple(getattr(feature, "shape", ()) or ())
    dtype = getattr(feature, "dtype", None)
    dtype = getattr(dtype, "as_numpy_dtype", dtype)
    if (len(shape) == 1 and shape[0] and dtype is not None
            and np.issubdtype(np.dtype(dtype), np.floating)):
        return ConditionSpec("vector", int(shape[0]), source=source)
    return None


def encode_documents(documents: Iterable[tuple], spec: ConditionSpec
                     ) -> Iterator[tuple[list[str], object]]:
    """`(sentences, raw, where)` documents -> `(sentences, encoded value)`."""
    for sentences, raw, where in documents:
        yield sentences, spec.encode(raw, where)


def group_documents(values: list) -> list[list[int]]:
    """Indices of documents with equal condition values, grouped in order of
    first appearance (instances are made within a group, never across
    conditions)."""
    groups = {}
    for i, value in enumerate(values):
        groups.setdefault(value, []).append(i)
    return list(groups.values())
