r"""Builds masked-LM TFRecord shards + manifest.json from corpus files.

Usage:
  python -m data_pipeline.build --task=mlm --input=corpus.txt \
      --tokenizer=spm.model --output_dir=/tmp/data --max_seq_length=128 \
      --max_predictions_per_seq=20 --seed=12345 [--num_shards=4] \
      [--eval_fraction=0.05]

Writes OUTPUT_DIR/train/ (and OUTPUT_DIR/eval/) each holding
shard-*-of-*.tfrecord and manifest.json. Splits are built in
OUTPUT_DIR/.tmp-*/ and renamed into place only when complete.
"""

import hashlib
import os
import shutil
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

import data_pipeline
from data_pipeline import corpus
from data_pipeline import features
from data_pipeline import instances as instances_lib
from data_pipeline import masking
from data_pipeline import records
from data_pipeline import tokenization

_ENCODE_BATCH_SENTENCES = 4096
_LOG_EVERY_SECONDS = 10.0


def is_eval_document(seed: int, index: int, eval_fraction: float) -> bool:
    """Whether document `index` is held out, from a hash of (seed, index)."""
    if eval_fraction <= 0.0:
        return False
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < eval_fraction


def _validate(max_seq_length, max_predictions_per_seq, masked_lm_prob,
              short_seq_prob, dupe_factor, num_shards, eval_fraction,
              compression):
    checks = [
        (max_seq_length >= 8, "--max_seq_length must be >= 8",
         f"max_seq_length={max_seq_length}"),
        (1 <= max_predictions_per_seq <= max_seq_length,
         "--max_predictions_per_seq must be in [1, --max_seq_length="
         f"{max_seq_length}]",
         f"max_predictions_per_seq={max_predictions_per_seq}"),
        (0.0 < masked_lm_prob < 1.0, "--masked_lm_prob must be in (0, 1)",
         f"masked_lm_prob={masked_lm_prob}"),
        (0.0 <= short_seq_prob <= 1.0, "--short_seq_prob must be in [0, 1]",
         f"short_seq_prob={short_seq_prob}"),
        (dupe_factor >= 1, "--dupe_factor must be >= 1",
         f"dupe_factor={dupe_factor}"),
        (num_shards >= 1, "--num_shards must be >= 1", f"num_shards={num_shards}"),
        (0.0 <= eval_fraction < 1.0, "--eval_fraction must be in [0, 1)",
         f"eval_fraction={eval_fraction}"),
        (compression in features.COMPRESSIONS,
         "--compression must be '' or 'GZIP'", f"compression={compression!r}"),
    ]
    for ok, rule, received in checks:
        if not ok:
            raise ValueError(f"{rule}. Received: {received}")


def _batched_documents(patterns):
    """Yields lists of documents holding about _ENCODE_BATCH_SENTENCES lines."""
    batch, size = [], 0
    for document in corpus.read_documents(patterns):
        batch.append(document)
        size += len(document)
        if size >= _ENCODE_BATCH_SENTENCES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def build_mlm(input_patterns, tokenizer_path: str, output_dir: str, *,
              max_seq_length: int = 128, max_predictions_per_seq: int = 20,
              masked_lm_prob: float = 0.15, short_seq_prob: float = 0.1,
              dupe_factor: int = 1, seed: int = 12345, num_shards: int = 1,
              eval_fraction: float = 0.0, source: str | None = None,
              compression: str = "",
              shuffle_buffer: int = 100_000) -> dict[str, features.Manifest]:
    """Builds statically masked MLM shards for a train (and eval) split.

    Args:
        input_patterns: str | list[str]. Corpus-file globs (comma-separated).
        tokenizer_path: str. SentencePiece `.model` from `train_tokenizer`.
        output_dir: str. Receives `train/` and, if `eval_fraction > 0`, `eval/`.
        max_seq_length: int. L (>= 8). Defaults to 128.
        max_predictions_per_seq: int. P (<= L). Defaults to 20.
        masked_lm_prob: float. Fraction of tokens masked. Defaults to 0.15.
        short_seq_prob: float. Probability of a shorter target length.
            Defaults to 0.1.
        dupe_factor: int. Times each training document is packed and masked
            (with fresh random choices); eval documents once. Defaults to 1.
        seed: int. Seed of every random choice. Defaults to 12345.
        num_shards: int. Training shard files. Defaults to 1.
        eval_fraction: float. Fraction of documents held out for `eval/`,
            chosen from a hash of (seed, document index). Defaults to 0.
        source: str | None. Description stored in the manifest; defaults to
            the input patterns.
        compression: str. "" or "GZIP". Defaults to "".
        shuffle_buffer: int. Records shuffled (seeded) before writing.
            Defaults to 100,000.

    Returns:
        Manifests by split name ("train", "eval").
    """
    _validate(max_seq_length, max_predictions_per_seq, masked_lm_prob,
              short_seq_prob, dupe_factor, num_shards, eval_fraction,
              compression)
    files = corpus.list_files(input_patterns)
    tokenizer = tokenization.SentencePieceTokenizer(tokenizer_path)
    split_names = ["train"] + (["eval"] if eval_fraction > 0 else [])
    shards = {"train": num_shards,
              "eval": max(1, int(round(num_shards * eval_fraction)))}

    created_output_dir = not os.path.isdir(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix=".tmp-", dir=output_dir)
    writers = {}
    try:
        rngs = {}
        for i, name in enumerate(split_names):
            os.makedirs(os.path.join(tmp_root, name))
            writers[name] = records.SplitWriter(
                os.path.join(tmp_root, name), shards[name], compression,
                shuffle_buffer=shuffle_buffer, seed=[seed, i, 2])
            rngs[name] = (np.random.default_rng([seed, i, 0]),
                          np.random.default_rng([seed, i, 1]))
        start = last_log = time.perf_counter()
        num_docs = 0
        for batch in _batched_documents(files):
            flat = [sentence for document in batch for sentence in document]
            ids = tokenizer.encode_batch(flat)
            offset = 0
            for document in batch:
                doc_ids = ids[offset:offset + len(document)]
                offset += len(document)
                starts = [tokenizer.is_word_start[np.asarray(s, np.int64)]
                          for s in doc_ids]
                split = ("eval" if is_eval_document(seed, num_docs, eval_fraction)
                         else "train")
                num_docs += 1
                writer = writers[split]
                pack_rng, mask_rng = rngs[split]
                for _ in range(dupe_factor if split == "train" else 1):
                    for inst in instances_lib.create_instances(
                            doc_ids, starts, pack_rng,
                            max_seq_length=max_seq_length,
                            short_seq_prob=short_seq_prob):
                        masked = masking.mask_tokens(
                            inst.tokens, inst.word_starts, mask_rng,
                            vocab_size=tokenizer.vocab_size,
                            max_predictions_per_seq=max_predictions_per_seq,
                            masked_lm_prob=masked_lm_prob)
                        writer.write(records.serialize_example(
                            masked, inst.segment_ids,
                            max_seq_length=max_seq_length,
                            max_predictions_per_seq=max_predictions_per_seq))
            now = time.perf_counter()
            if now - last_log > _LOG_EVERY_SECONDS:
                last_log = now
                total = sum(w.count for w in writers.values())
                logging.info("%d documents, %d instances, %.0f instances/s",
                             num_docs, total, total / (now - start))

        counts = {name: w.count for name, w in writers.items()}
        elapsed = time.perf_counter() - start
        logging.info("Done: %d documents, %s instances in %.1f s (%.0f "
                     "instances/s)", num_docs, counts, elapsed,
                     sum(counts.values()) / max(elapsed, 1e-9))
        if counts["train"] == 0:
            raise ValueError(
                f"--input={input_patterns!r} produced zero training instances "
                f"({num_docs} documents). Pass a non-empty corpus (one sentence "
                "per line, blank line between documents).")
        if eval_fraction > 0 and counts["eval"] == 0:
            raise ValueError(
                f"--eval_fraction={eval_fraction} held out zero instances from "
                f"{num_docs} documents. Use a larger --eval_fraction or corpus, "
                "or --eval_fraction=0.")

        manifests = {}
        for name, writer in writers.items():
            shard_files, per_shard = writer.close()
            manifest = features.Manifest(
                max_seq_length=max_seq_length,
                max_predictions_per_seq=max_predictions_per_seq,
                masked_lm_prob=masked_lm_prob, whole_word_masking=True,
                tokenizer_file=os.path.abspath(tokenizer_path),
                tokenizer_sha256=tokenizer.sha256,
                vocab_size=tokenizer.vocab_size,
                special_ids=dict(features.SPECIAL_IDS), seed=seed, split=name,
                num_shards=len(shard_files), shard_files=shard_files,
                examples_per_shard=per_shard, num_examples=sum(per_shard),
                compression=compression,
                source=source or f"files: {input_patterns}",
                tool_version=data_pipeline.__version__)
            manifest.write(writer.directory)  # Written last in the split.
            manifests[name] = manifest
        writers = {}
        for name in split_names:
            final = os.path.join(output_dir, name)
            if os.path.exists(final):
                os.rename(final, os.path.join(tmp_root, "old-" + name))
            os.rename(os.path.join(tmp_root, name), final)
        return manifests
    finally:
        for writer in writers.values():
            writer.abort()
        shutil.rmtree(tmp_root, ignore_errors=True)
        if created_output_dir and not os.listdir(output_dir):
            os.rmdir(output_dir)


def define_flags() -> None:
    """Defines this CLI's flags (called only when run as a program, so
    importing the module never adds global flags)."""
    flags.DEFINE_string(
        "task", "mlm", "Task: mlm (seq2seq and lm are not implemented yet).")
    flags.DEFINE_string(
        "input", None, "Comma-separated globs of corpus files.", required=True)
    flags.DEFINE_string(
        "tokenizer", None, "SentencePiece .model file.", required=True)
    flags.DEFINE_string("output_dir", None, "Output directory.", required=True)
    flags.DEFINE_integer(
        "max_seq_length", 128, "Sequence length L.", lower_bound=8)
    flags.DEFINE_integer(
        "max_predictions_per_seq", 20, "Masked positions P per sequence.",
        lower_bound=1)
    flags.DEFINE_integer("seed", 12345, "Seed of every random choice.")
    flags.DEFINE_integer(
        "num_shards", 1, "Training shard files.", lower_bound=1)
    flags.DEFINE_float(
        "eval_fraction", 0.0, "Fraction of documents held out for eval/.",
        lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_float(
        "masked_lm_prob", 0.15, "Fraction of tokens masked.",
        lower_bound=0.01, upper_bound=0.99)
    flags.DEFINE_float(
        "short_seq_prob", 0.1, "Probability of a shorter sequence.",
        lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer(
        "dupe_factor", 1, "Times each training document is masked.",
        lower_bound=1)
    flags.DEFINE_enum(
        "compression", "", ["", "GZIP"], "Shard compression.")


FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.task != "mlm":
        raise app.UsageError(f"--task={FLAGS.task!r} is not supported: only "
                             "--task=mlm is implemented; seq2seq and lm are "
                             "not implemented yet.")
    start = time.perf_counter()
    try:
        manifests = build_mlm(
            FLAGS.input, FLAGS.tokenizer, FLAGS.output_dir,
            max_seq_length=FLAGS.max_seq_length,
            max_predictions_per_seq=FLAGS.max_predictions_per_seq,
            masked_lm_prob=FLAGS.masked_lm_prob,
            short_seq_prob=FLAGS.short_seq_prob, dupe_factor=FLAGS.dupe_factor,
            seed=FLAGS.seed, num_shards=FLAGS.num_shards,
            eval_fraction=FLAGS.eval_fraction, compression=FLAGS.compression)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    seconds = time.perf_counter() - start
    total = sum(m.num_examples for m in manifests.values())
    for name, manifest in manifests.items():
        print(f"{name}: {manifest.num_examples} instances in "
              f"{manifest.num_shards} shard(s) -> "
              f"{os.path.join(FLAGS.output_dir, name)}")
    print(f"{total} instances in {seconds:.1f} s "
          f"({total / max(seconds, 1e-9):.0f} instances/s)")


if __name__ == "__main__":
    define_flags()
    app.run(main)
