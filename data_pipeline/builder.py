"""Builds TFRecord shards + manifest.json for every task (library side of
`python -m data_pipeline.build`).

Documents are numbered in input order and cut into fixed work units of
`docs_per_unit` documents; each unit is tokenized, packed and masked with
random generators seeded from (seed, unit), possibly in another process, and
the units' records are merged in unit order through a seeded shuffle
buffer. The shards are therefore byte-identical for any `num_workers`.
Splits are written under OUTPUT_DIR/.tmp-HOST-PID-*/ and renamed into place
only when complete, so an error or interrupt leaves no manifest behind; a
full disk removes the temporary directory, and the next build removes those
a killed build left (`atomic.remove_stale_temp_dirs`). OUTPUT_DIR may
be a `gs://` URL: files then go through `tf.io.gfile` and each split is copied
into place with its manifest last (see `atomic.publish_dir`).
"""

import itertools
import os
import time

import tensorflow as tf
from absl import logging

import data_pipeline
from data_pipeline import atomic
from data_pipeline import conditions
from data_pipeline import features
from data_pipeline import parallel
from data_pipeline import records
from data_pipeline import sources
from data_pipeline import tasks
from data_pipeline import tokenization

_LOG_EVERY_SECONDS = 10.0


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


def build(inputs, tokenizer_path: str, output_dir: str, *,
          task: tasks.TaskConfig = tasks.TaskConfig(),
          source: sources.SourceConfig = sources.SourceConfig(),
          tokenizer_options: dict | None = None, seed: int = 12345,
          num_shards: int = 1, eval_fraction: float = 0.0,
          compression: str = "", shuffle_buffer: int = 100_000,
          num_workers: int = 1, docs_per_unit: int = 256,
          description: str | None = None) -> dict[str, features.Manifest]:
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
        seed: int. Seed of every random choice. Defaults to 12345.
        num_shards: int. Training shard files. Defaults to 1.
        eval_fraction: float. Held-out fraction of documents. Defaults to 0.
        compression: str. "" or "GZIP". Defaults to "".
        shuffle_buffer: int. Records shuffled (seeded) before writing.
            Defaults to 100,000.
        num_workers: int. Processes tokenizing/packing units. Defaults to 1.
        docs_per_unit: int. Documents per work unit. Defaults to 256.
        description: str | None. Manifest `source`. Defaults to None (a
            description of the inputs).

    Returns:
        Manifests by split name.
    """
    _validate(task, num_shards, eval_fraction, compression, docs_per_unit)
    if source.split_sentences and not task.next_sentence and not (
            task.task == "seq2seq" and not task.pairs):
        logging.warning(
            "--split_sentences does nothing with --task=%s without "
            "--next_sentence: documents are packed whole (sentences matter to "
            "NSP pairs and seq2seq spans only).", task.task)
    condition = conditions.resolve(inputs, source)  # before any output
    if condition is not None:
        logging.info("Condition: %s", condition.to_manifest())
    tokenizer = tokenization.load_tokenizer(tokenizer_path,
                                            **(tokenizer_options or {}))
    split_names = ["train"] + (["eval"] if eval_fraction > 0 else [])
    shards = {"train": num_shards,
              "eval": max(1, int(round(num_shards * eval_fraction)))}
    remote = atomic.is_remote(output_dir)
    if not remote and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir={output_dir!r} is an existing file: pass a directory "
                         "(it receives train/ and eval/).")
    created_output_dir = not remote and not os.path.isdir(output_dir)
    if remote:
        tf.io.gfile.makedirs(output_dir)
    else:
        os.makedirs(output_dir, exist_ok=True)
    atomic.remove_stale_temp_dirs(output_dir, ".tmp")
    tmp_root = atomic.make_temp_dir(output_dir, ".tmp")
    writers = {}
    try:
        for i, name in enumerate(split_names):
            if remote:
                tf.io.gfile.makedirs(os.path.join(tmp_root, name))
            else:
                os.makedirs(os.path.join(tmp_root, name))
            writers[name] = records.SplitWriter(
                os.path.join(tmp_root, name), shards[name], compression,
                shuffle_buffer=shuffle_buffer, seed=[seed, i, 2])
        read = sources.ReadProgress()
        if condition is None:
            documents = sources.read_documents(inputs, source, read)
        else:  # (sentences, the condition's id or vector)
            documents = conditions.encode_documents(
                sources.read_conditioned_documents(inputs, source, read),
                condition)
        units = ((docs, unit * docs_per_unit, unit) for unit, docs in
                 enumerate(iter(lambda: list(itertools.islice(
                     documents, docs_per_unit)), [])))
        unit_sizes = []
        one_sentence = 0

        def run(docs, first, unit):
            out = tasks.process_unit(docs, first, unit, tokenizer, task,
                                     seed=seed, eval_fraction=eval_fraction,
                                     condition=condition)
            out["documents"] = len(docs)
            return out

        progress = _Progress(read)
        for out in parallel.ordered_map(run, units, num_workers):
            made = 0
            for name in split_names:
                writers[name].write_batch(out[name])
                made += len(out[name])
            unit_sizes.append(out["documents"])
            one_sentence += out["one_sentence_documents"]
            progress.update(out["documents"], made, out["text_bytes"])
        progress.update(0, 0, 0, force=True)
        counts = {name: w.count for name, w in writers.items()}
        num_docs = sum(unit_sizes)
        if task.next_sentence and one_sentence:
            logging.warning(
                "--next_sentence: %d of %d documents have one sentence; their "
                "pairs always take B from another document (label 1, or none "
                "when too short). Give documents several sentences (one per "
                "line in --input_format=text, or --split_sentences).",
                one_sentence, num_docs)
        if counts["train"] == 0:
            raise ValueError(
                f"--input={inputs!r} produced zero training instances "
                f"({num_docs} documents). Pass a non-empty corpus in "
                f"--input_format={source.input_format}.")
        if eval_fraction > 0 and counts["eval"] == 0:
            raise ValueError(
                f"--eval_fraction={eval_fraction} held out zero instances from "
                f"{num_docs} documents. Use a larger --eval_fraction or corpus, "
                "or --eval_fraction=0.")
        manifests = {}
        for name, writer in writers.items():
            shard_files, per_shard = writer.close()
            manifest = features.Manifest(
                task=task.task, masking=task.record_masking,
                max_seq_length=task.max_seq_length,
                max_predictions_per_seq=task.max_predictions_per_seq,
                masked_lm_prob=task.masked_lm_prob,
                whole_word_masking=task.whole_word_masking,
                next_sentence=task.next_sentence,
                tokenizer_kind=tokenizer.kind,
                tokenizer_file=os.path.abspath(tokenizer_path),
                tokenizer_sha256=tokenizer.sha256,
                tokenizer_options=dict(tokenizer.options),
                vocab_size=tokenizer.vocab_size,
                special_ids=dict(tokenizer.layout.special_ids),
                reserved_id_ranges=[list(r) for r in
                                    tokenizer.layout.reserved_id_ranges],
                short_seq_prob=task.short_seq_prob,
                dupe_factor=task.dupe_factor, seed=seed, split=name,
                num_shards=len(shard_files), shard_files=shard_files,
                examples_per_shard=per_shard, num_examples=sum(per_shard),
                compression=compression,
                source=description or sources.describe(inputs, source),
                tool_version=data_pipeline.__version__,
                condition=condition and condition.to_manifest())
            manifest.write(writer.directory)  # Written last in the split.
            manifests[name] = manifest
        writers = {}
        for name in split_names:
            atomic.publish_dir(os.path.join(tmp_root, name),
                               os.path.join(output_dir, name),
                               os.path.join(tmp_root, "old-" + name),
                               features.MANIFEST_FILE)
        return manifests
    except tf.errors.OpError as e:  # a TFRecordWriter failed: full disk, I/O error
        raise OSError(f"Writing records under {tmp_root} failed: {e.message}; nothing "
                      f"was published in {output_dir}. Free space and build again.") from None
    finally:
        for writer in writers.values():
            writer.abort()  # never raises: cleanup survives a second ENOSPC
        atomic.remove_tree(tmp_root)
        try:
            if created_output_dir and not os.listdir(output_dir):
                os.rmdir(output_dir)
        except OSError:
            pass
