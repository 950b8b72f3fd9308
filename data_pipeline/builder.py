"""Builds TFRecord shards + manifest.json for every task (library side of
`python -m data_pipeline.build`).

Documents are numbered in input order and cut into fixed work units of
`docs_per_unit` documents (`read_units`); each unit is tokenized, packed and
masked with random generators seeded from (seed, unit) (`run_unit`), in
this process pool or on Apache Beam (`beam_build`, `runner=`). Each record's
shard and its place in the shard are a pure function of (seed, split, unit,
record index) (`shuffle`), so the shards are byte-identical for any
`num_workers` and any Beam runner. Locally, records go through per-shard
spill files and each shard is sorted on its own: peak memory is about the
largest shard, not the corpus.

Splits are written under OUTPUT_DIR/.tmp-HOST-PID-*/ and renamed into place
only when complete, manifest last, so an error or interrupt leaves no
manifest behind; a full disk removes the temporary directory, and the next
build removes those a killed build left (`atomic.remove_stale_temp_dirs`).
An OUTPUT_DIR that already holds a build is refused unless `overwrite`.
OUTPUT_DIR may be a `gs://` URL: files then go through `tf.io.gfile` and
each split is copied into place with its manifest last (see
`atomic.publish_dir`).
"""

import dataclasses
import errno
import itertools
import os
import tempfile
import time

import tensorflow as tf
from absl import logging

import data_pipeline
from data_pipeline import atomic
from data_pipeline import conditions
from data_pipeline import features
from data_pipeline import parallel
from data_pipeline import shuffle
from data_pipeline import sources
from data_pipeline import tasks
from data_pipeline import tokenization

_LOG_EVERY_SECONDS = 10.0
# Errors writing the records: a full disk or quota, a read-only or failing disk.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


def _validate(cfg: tasks.TaskConfig, num_shards, eval_fraction, compression,
              docs_per_unit):
    cfg.validate()
    length = cfg.max_seq_length
    checks = [
        (length >= 8, "--max_seq_length must be >= 8",
         f"max_seq_length={length}"),
        (1 <= cfg.max_predictions_per_seq <= length,
         f"--max_predictions_per_seq must be in [1, --max_seq_length={length}]",
         f"max_predictions_per_seq={cfg.max_predictions_per_seq}"),
        (0.0 < cfg.masked_lm_prob < 1.0, "--masked_lm_prob must be in (0, 1)",
         f"masked_lm_prob={cfg.masked_lm_prob}"),
        (0.0 <= cfg.short_seq_prob <= 1.0, "--short_seq_prob must be in [0, 1]",
         f"short_seq_prob={cfg.short_seq_prob}"),
        (cfg.dupe_factor >= 1, "--dupe_factor must be >= 1",
         f"dupe_factor={cfg.dupe_factor}"),
        (num_shards >= 1, "--num_shards must be >= 1", f"num_shards={num_shards}"),
        (0.0 <= eval_fraction < 1.0, "--eval_fraction must be in [0, 1)",
         f"eval_fraction={eval_fraction}"),
        (compression in features.COMPRESSIONS,
         "--compression must be '' or 'GZIP'", f"compression={compression!r}"),
        (docs_per_unit >= 1, "--docs_per_unit must be >= 1",
         f"docs_per_unit={docs_per_unit}"),
    ]
    for ok, rule, received in checks:
        if not ok:
            raise ValueError(f"{rule}. Received: {received}")


class _Progress:
    """Logs documents, instances, MB/s and ETA every few seconds; the ETA
    from the fraction of the input read (`sources.ReadProgress`: bytes on
    disk, compressed for .gz, or TFDS examples)."""

    def __init__(self, read: sources.ReadProgress):
        self.read = read
        self.start = self.last = time.perf_counter()
        self.docs = self.instances = self.bytes = 0

    def update(self, docs, instances, text_bytes, force=False):
        self.docs += docs
        self.instances += instances
        self.bytes += text_bytes
        now = time.perf_counter()
        if not force and now - self.last < _LOG_EVERY_SECONDS:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = self.bytes / elapsed
        eta = "?"
        fraction = self.read.fraction
        if fraction:
            eta = f"{elapsed * (1.0 - fraction) / fraction:.0f} s"
        logging.info("%d documents, %d instances, %.2f MB/s, %.0f instances/s,"
                     " ETA %s", self.docs, self.instances, rate / 1e6,
                     self.instances / elapsed, eta)


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What every unit of work needs (picklable: Beam ships it to workers).

    Args:
        inputs: str | list[str]. File globs (comma-separated) or a TFDS name.
        source: sources.SourceConfig. Input format.
        task: tasks.TaskConfig. Task, lengths, masking.
        tokenizer_path: str. SentencePiece `.model` or BERT `vocab.txt`.
        tokenizer_options: dict. `tokenization.load_tokenizer` options.
        seed: int. Seed of every random choice.
        eval_fraction: float. Held-out fraction of documents.
        docs_per_unit: int. Documents per work unit.
        shards: dict. Shard files per split name (`train`, `eval`).
        compression: str. "" or "GZIP".
        condition: conditions.ConditionSpec | None. Per-document condition.
            Defaults to None.
    """

    inputs: object
    source: sources.SourceConfig
    task: tasks.TaskConfig
    tokenizer_path: str
    tokenizer_options: dict
    seed: int
    eval_fraction: float
    docs_per_unit: int
    shards: dict
    compression: str
    condition: object = None

    def load_tokenizer(self):
        """The tokenizer; from a URL (`gs://`), through a local copy (with
        `tokenizer_config.json` when one lies beside it)."""
        path = self.tokenizer_path
        if atomic.is_remote(path):
            local = tempfile.mkdtemp(prefix="tokenizer-")
            for name in (os.path.basename(path), "tokenizer_config.json"):
                src = os.path.join(os.path.dirname(path), name)
                if tf.io.gfile.exists(src):
                    tf.io.gfile.copy(src, os.path.join(local, name))
            path = os.path.join(local, os.path.basename(path))
        return tokenization.load_tokenizer(path, **self.tokenizer_options)


@dataclasses.dataclass
class SplitsWritten:
    """What a shard writer (local or Beam) hands back.

    Args:
        shards: dict. Split name -> (shard basenames, records per shard).
        documents: int | None. Documents read (None: unknown).
        one_sentence_documents: int. Documents of one sentence. Defaults
            to 0.
    """

    shards: dict
    documents: int | None
    one_sentence_documents: int = 0


def read_units(plan: BuildPlan, progress: sources.ReadProgress | None = None):
    """Yields the work units `(documents, first document index, unit index)`
    of the input, in input order."""
    if plan.condition is None:
        documents = sources.read_documents(plan.inputs, plan.source, progress)
    else:  # (sentences, the condition's id or vector)
        documents = conditions.encode_documents(
            sources.read_conditioned_documents(plan.inputs, plan.source,
                                               progress), plan.condition)
    size = plan.docs_per_unit
    for unit, docs in enumerate(iter(lambda: list(itertools.islice(
            documents, size)), [])):
        yield docs, unit * size, unit


def run_unit(plan: BuildPlan, tokenizer, documents: list, first: int,
             unit: int) -> dict:
    """The one unit of work of both builders: `tasks.process_unit`'s output
    (records per split, statistics) plus `documents`, the unit's size."""
    out = tasks.process_unit(documents, first, unit, tokenizer, plan.task,
                             seed=plan.seed, eval_fraction=plan.eval_fraction,
                             condition=plan.condition)
    out["documents"] = len(documents)
    return out


def _write_locally(plan: BuildPlan, tmp_root: str, tokenizer,
                   num_workers: int) -> SplitsWritten:
    """Runs the units in a process pool; shards through spill files."""
    spill_root = (tempfile.mkdtemp(prefix="spill-", dir=tmp_root)
                  if not atomic.is_remote(tmp_root) else
                  tempfile.mkdtemp(prefix="data-build-spill-"))
    writers = {}
    try:
        for split_index, name in enumerate(tasks.SPLITS):
            if name in plan.shards:
                spill = os.path.join(spill_root, name)
                os.makedirs(spill)
                writers[name] = shuffle.SpillWriter(
                    os.path.join(tmp_root, name), spill, plan.shards[name],
                    plan.seed, split_index, plan.compression)
        read = sources.ReadProgress()
        progress = _Progress(read)
        documents = one_sentence = 0
        for out in parallel.ordered_map(
                lambda docs, first, unit: (unit, run_unit(
                    plan, tokenizer, docs, first, unit)),
                read_units(plan, read), num_workers):
            unit, out = out
            made = 0
            for name, writer in writers.items():
                writer.add(unit, out[name])
                made += len(out[name])
            documents += out["documents"]
            one_sentence += out["one_sentence_documents"]
            progress.update(out["documents"], made, out["text_bytes"])
        progress.update(0, 0, 0, force=True)
        shards = {}
        for name, writer in writers.items():
            if writer.count == 0:  # the caller raises; skip sorting nothing
                shards[name] = ([], [0])
                continue
            shards[name] = writer.close()
        return SplitsWritten(shards, documents, one_sentence)
    finally:
        for writer in writers.values():
            writer.abort()
        atomic.remove_tree(spill_root)


def _refuse_existing(output_dir: str, remote: bool) -> None:
    for name in tasks.SPLITS:
        manifest = os.path.join(output_dir, name, features.MANIFEST_FILE)
        if (tf.io.gfile.exists(manifest) if remote
                else os.path.exists(manifest)):
            raise ValueError(
                f"--output_dir={output_dir!r} already holds a build "
                f"({manifest} exists). Pass --overwrite to replace it, or "
                "choose another --output_dir.")


def build(inputs, tokenizer_path: str, output_dir: str, *,
          task: tasks.TaskConfig = tasks.TaskConfig(),
          source: sources.SourceConfig = sources.SourceConfig(),
          tokenizer_options: dict | None = None, seed: int = 12345,
          num_shards: int = 1, eval_fraction: float = 0.0,
          compression: str = "", num_workers: int = 1,
          docs_per_unit: int = 256, description: str | None = None,
          overwrite: bool = False, runner: str | None = None,
          beam_options: tuple = ()) -> dict[str, features.Manifest]:
    """Builds shards for a train (and eval) split.

    Args:
        inputs: str | list[str]. File globs (comma-separated) or a TFDS name.
        tokenizer_path: str. SentencePiece `.model` or BERT `vocab.txt`.
        output_dir: str. Receives `train/` and, with `eval_fraction`, `eval/`.
        task: tasks.TaskConfig. Task, lengths, masking. Defaults to
            `TaskConfig()` (mlm, static masking, L = 128).
        source: sources.SourceConfig. Input format. Defaults to
            `SourceConfig()` (text files).
        tokenizer_options: dict | None. `do_lower_case`, `strip_accents`,
            `segmenter` for WordPiece. Defaults to None (the tokenizer's
            defaults).
        seed: int. Seed of every random choice (also of the shard each record
            goes to and its place there). Defaults to 12345.
        num_shards: int. Training shard files. Defaults to 1.
        eval_fraction: float. Held-out fraction of documents. Defaults to 0.
        compression: str. "" or "GZIP". Defaults to "".
        num_workers: int. Processes tokenizing/packing units (local builder).
            Defaults to 1.
        docs_per_unit: int. Documents per work unit. Defaults to 256.
        description: str | None. Manifest `source`. Defaults to None (a
            description of the inputs).
        overwrite: bool. Replace a build already in `output_dir`. Defaults
            to False (refused, naming its manifest).
        runner: str | None. An Apache Beam runner (`beam_build.RUNNERS`) to
            run the units on. Defaults to None (this process pool).
        beam_options: tuple. Further Beam pipeline options
            (`--project=...`). Defaults to ().

    Returns:
        Manifests by split name.
    """
    _validate(task, num_shards, eval_fraction, compression, docs_per_unit)
    if runner is not None:
        from data_pipeline import beam_build  # pylint: disable=import-outside-toplevel
        beam_build.check_runner(runner, beam_options)
    if source.split_sentences and not task.next_sentence and not (
            task.task == "seq2seq" and not task.pairs):
        logging.warning(
            "--split_sentences does nothing with --task=%s without "
            "--next_sentence: documents are packed whole (sentences matter to "
            "NSP pairs and seq2seq spans only).", task.task)
    condition = conditions.resolve(inputs, source)  # before any output
    if condition is not None:
        logging.info("Condition: %s", condition.to_manifest())
    split_names = ["train"] + (["eval"] if eval_fraction > 0 else [])
    shards = {"train": num_shards,
              "eval": max(1, int(round(num_shards * eval_fraction)))}
    plan = BuildPlan(inputs, source, task, tokenizer_path,
                     dict(tokenizer_options or {}), seed, eval_fraction,
                     docs_per_unit, {name: shards[name] for name in split_names},
                     compression, condition)
    tokenizer = plan.load_tokenizer()
    remote = atomic.is_remote(output_dir)
    if not remote and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir={output_dir!r} is an existing file: pass a directory "
                         "(it receives train/ and eval/).")
    if not overwrite:
        _refuse_existing(output_dir, remote)
    created_output_dir = not remote and not os.path.isdir(output_dir)
    if remote:
        tf.io.gfile.makedirs(output_dir)
    else:
        os.makedirs(output_dir, exist_ok=True)
    atomic.remove_stale_temp_dirs(output_dir, ".tmp")
    tmp_root = atomic.make_temp_dir(output_dir, ".tmp")
    try:
        for name in split_names:
            tf.io.gfile.makedirs(os.path.join(tmp_root, name))
        if runner is None:
            written = _write_locally(plan, tmp_root, tokenizer, num_workers)
        else:
            written = beam_build.write_splits(plan, tmp_root, runner,
                                              beam_options)
        manifests = _manifests(plan, tokenizer, written, description)
        for name, manifest in manifests.items():
            manifest.write(os.path.join(tmp_root, name))  # Last in the split.
        for name in split_names:
            atomic.publish_dir(os.path.join(tmp_root, name),
                               os.path.join(output_dir, name),
                               os.path.join(tmp_root, "old-" + name),
                               features.MANIFEST_FILE)
        return manifests
    except (tf.errors.OpError, OSError) as e:
        # A TFRecordWriter (OpError) or a spill file (OSError) failed: a full
        # disk, an I/O error. Other OSErrors (an unreadable input) pass.
        if isinstance(e, OSError) and e.errno not in _WRITE_ERRNOS:
            raise
        reason = e.message if isinstance(e, tf.errors.OpError) else e.strerror
        raise OSError(f"Writing records under {tmp_root} failed: {reason}; nothing "
                      f"was published in {output_dir}. Free space and build again.") from None
    finally:
        atomic.remove_tree(tmp_root)
        try:
            if created_output_dir and not os.listdir(output_dir):
                os.rmdir(output_dir)
        except OSError:
            pass


def _manifests(plan: BuildPlan, tokenizer, written: SplitsWritten,
               description: str | None) -> dict[str, features.Manifest]:
    """The splits' manifests (ValueError for an empty split)."""
    task = plan.task
    docs = "?" if written.documents is None else written.documents
    counts = {name: sum(per_shard)
              for name, (_, per_shard) in written.shards.items()}
    if task.next_sentence and written.one_sentence_documents:
        logging.warning(
            "--next_sentence: %d of %s documents have one sentence; their "
            "pairs always take B from another document (label 1, or none "
            "when too short). Give documents several sentences (one per "
            "line in --input_format=text, or --split_sentences).",
            written.one_sentence_documents, docs)
    if counts["train"] == 0:
        raise ValueError(
            f"--input={plan.inputs!r} produced zero training instances "
            f"({docs} documents). Pass a non-empty corpus in "
            f"--input_format={plan.source.input_format}.")
    if plan.eval_fraction > 0 and counts["eval"] == 0:
        raise ValueError(
            f"--eval_fraction={plan.eval_fraction} held out zero instances "
            f"from {docs} documents. Use a larger --eval_fraction or corpus, "
            "or --eval_fraction=0.")
    manifests = {}
    for name, (shard_files, per_shard) in written.shards.items():
        manifests[name] = features.Manifest(
            task=task.task, masking=task.record_masking,
            max_seq_length=task.max_seq_length,
            max_predictions_per_seq=task.max_predictions_per_seq,
            masked_lm_prob=task.masked_lm_prob,
            whole_word_masking=task.whole_word_masking,
            next_sentence=task.next_sentence,
            tokenizer_kind=tokenizer.kind,
            tokenizer_file=(plan.tokenizer_path
                            if atomic.is_remote(plan.tokenizer_path)
                            else os.path.abspath(plan.tokenizer_path)),
            tokenizer_sha256=tokenizer.sha256,
            tokenizer_options=dict(tokenizer.options),
            vocab_size=tokenizer.vocab_size,
            special_ids=dict(tokenizer.layout.special_ids),
            reserved_id_ranges=[list(r) for r in
                                tokenizer.layout.reserved_id_ranges],
            short_seq_prob=task.short_seq_prob,
            dupe_factor=task.dupe_factor, seed=plan.seed, split=name,
            num_shards=len(shard_files), shard_files=shard_files,
            examples_per_shard=per_shard, num_examples=sum(per_shard),
            compression=plan.compression,
            source=description or sources.describe(plan.inputs, plan.source),
            tool_version=data_pipeline.__version__,
            condition=plan.condition and plan.condition.to_manifest())
    return manifests
