"""Checks that a split directory holds what its manifest says.

Three costs, three functions:

    check_shards(data_dir)          # at start: every shard present, big enough
    verify_split(data_dir)          # on request: every record read and parsed
    find_bad_record(data_dir)       # after a TF error: which shard, which record

`check_shards` only stats files: a record of a layout takes at least the
bytes of its all-zero record (`features.zero_record`: every varint one byte)
plus TFRecord's 16 bytes of framing, so an uncompressed shard smaller than
`count * (16 + len(zero_record))` cannot hold its count. `verify_split` reads
and parses every record (the spec of `features.feature_spec`, so missing or
renamed features, wrong dtypes and wrong lengths are found) and compares
each shard's count with the manifest. `find_bad_record` runs the same scan
and returns the first problem instead of raising, for a caller (the trainer)
that caught a `tf.errors.OpError` from the input pipeline; `explain_error`
turns that into the one-line message.
"""

import dataclasses
import os

from data_pipeline import features

# TFRecord framing: uint64 length, uint32 length CRC, data, uint32 data CRC.
_FRAMING_BYTES = 16
_PARSE_BATCH = 256


@dataclasses.dataclass(frozen=True)
class DataProblem:
    """The first thing found wrong in a split.

    Args:
        path: str. The shard file (or the manifest) at fault.
        record_index: int | None. 0-based index of the bad record in `path`,
            None when the problem is the whole file (missing, short, count).
        reason: str. What is wrong, without the path.
    """

    path: str
    record_index: int | None
    reason: str

    def message(self) -> str:
        """One line: path, record, reason and the fix."""
        where = self.path if self.record_index is None else (
            f"{self.path}, record {self.record_index}")
        return (f"{where}: {self.reason}. Rebuild the data with "
                "`python -m data_pipeline.build` (or restore the file).")


def _gfile():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.gfile


def _lengths(manifest: features.Manifest) -> dict:
    return features.feature_lengths(manifest.task, manifest.masking,
                                    manifest.max_seq_length,
                                    manifest.max_predictions_per_seq,
                                    manifest.next_sentence, manifest.condition)


def min_record_bytes(manifest: features.Manifest) -> int:
    """Smallest possible size on disk of one uncompressed record of the
    manifest's layout, framing included."""
    return _FRAMING_BYTES + len(features.zero_record(_lengths(manifest)))


def shard_paths(data_dir: str, manifest: features.Manifest) -> list[str]:
    """The shard files of a split, in manifest order."""
    return [os.path.join(data_dir, name) for name in manifest.shard_files]


def _size_problem(path: str, count: int, manifest: features.Manifest,
                  minimum: int) -> DataProblem | None:
    gfile = _gfile()
    if not gfile.exists(path):
        return DataProblem(path, None, f"missing (listed in {features.MANIFEST_FILE} "
                           f"with {count} records)")
    size = gfile.stat(path).length
    if count and size == 0:
        return DataProblem(path, None, f"file is empty (0 bytes) but "
                           f"{features.MANIFEST_FILE} says it holds {count} records")
    if count and not manifest.compression and size < count * minimum:
        return DataProblem(
            path, None, f"file has {size} bytes, too short for the {count} records "
            f"{features.MANIFEST_FILE} lists (each takes at least {minimum} bytes): "
            "it was cut short")
    return None


def check_shards(data_dir: str, manifest: features.Manifest | None = None) -> None:
    """Refuses a split whose shards are missing or too small for their counts.

    Cheap (one stat per shard); call it when a split is opened.

    Args:
        data_dir: str. A split directory.
        manifest: features.Manifest | None. Its manifest; read when None.

    Raises:
        ValueError: naming the first bad shard, its size and the count.
    """
    manifest = manifest or features.Manifest.read(data_dir)
    minimum = min_record_bytes(manifest)
    for path, count in zip(shard_paths(data_dir, manifest), manifest.examples_per_shard):
        problem = _size_problem(path, count, manifest, minimum)
        if problem:
            raise ValueError(problem.message())


def tf_error_line(error: Exception) -> str:
    """The first line of a TensorFlow error without its `{{function_node …}}`
    prefix and `[Op:…]` suffix."""
    text = getattr(error, "message", None) or str(error)
    text = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    if text.startswith("{{function_node"):
        text = text.split("}}", 1)[-1].strip()
    return text.split(" [Op:")[0].strip().rstrip(".")


def _first_bad_in_batch(serialized, spec, start: int):
    """(index, reason) of the first record of `serialized` that fails to parse."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    for j in range(len(serialized)):
        try:
            tf.io.parse_example(serialized[j:j + 1], spec)
        except tf.errors.InvalidArgumentError as e:
            return start + j, tf_error_line(e)
    return None


def scan_shard(path: str, count: int, manifest: features.Manifest) -> DataProblem | None:
    """Reads and parses every record of one shard; the first problem or None.

    Args:
        path: str. The shard file.
        count: int. Records the manifest lists for it.
        manifest: features.Manifest. Its split's manifest (layout, compression).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    problem = _size_problem(path, count, manifest, min_record_bytes(manifest))
    if problem:
        return problem
    spec = features.feature_spec(manifest)
    dataset = tf.data.TFRecordDataset(path, compression_type=manifest.compression or None)
    iterator = iter(dataset.batch(_PARSE_BATCH))
    seen = 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        except tf.errors.OpError as e:
            # The batch holding the bad record fails whole: find the record.
            good = sum(1 for _ in _readable(path, manifest.compression))
            return DataProblem(path, good, f"unreadable: {tf_error_line(e)} (wrong "
                               f"compression={manifest.compression!r}, not a TFRecord "
                               "file, truncated or corrupted)")
        try:
            tf.io.parse_example(batch, spec)
        except tf.errors.InvalidArgumentError:
            index, reason = _first_bad_in_batch(batch, spec, seen)
            return DataProblem(path, index, f"does not match the manifest's layout "
                               f"(task={manifest.task}, masking={manifest.masking}, "
                               f"max_seq_length={manifest.max_seq_length}): {reason}")
        seen += int(batch.shape[0])
    if seen != count:
        return DataProblem(path, None, f"holds {seen} records, {features.MANIFEST_FILE} "
                           f"says {count}")
    return None


def _readable(path: str, compression: str):
    """Yields records of `path` until the first unreadable one."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    iterator = iter(tf.data.TFRecordDataset(path, compression_type=compression or None))
    while True:
        try:
            yield next(iterator)
        except (StopIteration, tf.errors.OpError):
            return


def find_bad_record(data_dir: str, error: Exception | None = None) -> DataProblem | None:
    """Scans a split for the shard and record that broke a read.

    Standalone: call it with the split directory after the input pipeline
    raised a `tf.errors.OpError` (`DataLossError` for a corrupt or truncated
    shard, `InvalidArgumentError` for a record that does not parse,
    `FailedPreconditionError` for a shard with fewer records than its
    manifest says). It reads every shard, so it costs one pass over the split.

    Args:
        data_dir: str. The split directory the pipeline read.
        error: Exception | None. The error caught (unused by the scan; kept
            so callers can pass what they have).

    Returns:
        The first `DataProblem` found, or None when every shard reads and
        parses and every count matches.

    Raises:
        ValueError: the manifest itself is missing or invalid.
    """
    del error  # The scan does not depend on it.
    manifest = features.Manifest.read(data_dir)
    for path, count in zip(shard_paths(data_dir, manifest), manifest.examples_per_shard):
        problem = scan_shard(path, count, manifest)
        if problem:
            return problem
    return None


def explain_error(data_dir: str, error: Exception) -> str:
    """The one-line message for a TF error raised while reading `data_dir`:
    the bad shard and record when the scan finds them, else the error's
    first line with the split named."""
    problem = find_bad_record(data_dir, error)
    if problem:
        return problem.message()
    return (f"Reading {data_dir} failed: {tf_error_line(error)} (every shard reads and "
            "parses now; was it changed during the run?)")


def verify_split(data_dir: str) -> list[int]:
    """Reads every record of a split; returns the records counted per shard.

    Raises:
        ValueError: naming the first bad shard (and record), as
            `DataProblem.message`.
    """
    manifest = features.Manifest.read(data_dir)
    problem = find_bad_record(data_dir)
    if problem:
        raise ValueError(problem.message())
    return list(manifest.examples_per_shard)


def check_same_tokenizer(first: features.Manifest, first_where: str,
                         second: features.Manifest, second_where: str) -> None:
    """Refuses two manifests whose records come from different tokenizers.

    Args:
        first, second: features.Manifest. E.g. the train and eval splits, or
            a run's saved `data_manifest.json` and the data it resumes on.
        first_where, second_where: str. Where each came from (for the message).

    Raises:
        ValueError: naming both places and both `tokenizer_sha256` values.
    """
    if first.tokenizer_sha256 != second.tokenizer_sha256:
        raise ValueError(
            f"Records from different tokenizers: {first_where} has tokenizer_sha256="
            f"{first.tokenizer_sha256} ({first.tokenizer_file}), {second_where} has "
            f"tokenizer_sha256={second.tokenizer_sha256} ({second.tokenizer_file}). "
            "Build both from the same tokenizer model.")


def check_resume_tokenizer(saved_manifest_path: str, manifest: features.Manifest,
                           data_dir: str) -> None:
    """Refuses to resume a run on records from another tokenizer.

    Args:
        saved_manifest_path: str. The run directory's `data_manifest.json`
            (the train manifest of its first start); nothing is checked
            when it does not exist (a new run).
        manifest: features.Manifest. The train split the run would read now.
        data_dir: str. Where `manifest` was read (for the message).

    Raises:
        ValueError: naming both files and both `tokenizer_sha256` values, or
            the saved file when it is not a JSON object.
    """
    import json  # pylint: disable=import-outside-toplevel
    gfile = _gfile()
    if not gfile.exists(saved_manifest_path):
        return
    with gfile.GFile(saved_manifest_path) as f:
        try:
            saved = json.loads(f.read())
        except json.JSONDecodeError as e:
            raise ValueError(f"{saved_manifest_path} is not valid JSON ({e}); restore it "
                             "or remove it to skip the tokenizer check.") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{saved_manifest_path} must hold a JSON object. Received: "
                         f"{type(saved).__name__}")
    sha = saved.get("tokenizer_sha256")
    if sha and sha != manifest.tokenizer_sha256:
        raise ValueError(
            f"Resuming on records from another tokenizer: the run's "
            f"{saved_manifest_path} has tokenizer_sha256={sha} "
            f"({saved.get('tokenizer_file')}), {os.path.join(data_dir, features.MANIFEST_FILE)}"
            f" has tokenizer_sha256={manifest.tokenizer_sha256} ({manifest.tokenizer_file}). "
            "Use data built with the run's tokenizer, or a new --model_dir.")
