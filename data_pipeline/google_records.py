r"""Reads records made by Google's `create_pretraining_data.py`.

Their layout is our static MLM layout; only a manifest is missing. This
writes a small one, with a symbolic link to each record file beside it (a
manifest names files inside its own directory only):

  python -m data_pipeline.google_records --input='google/*.tfrecord' \
      --output_dir=data/google_train --max_seq_length=128 \
      --max_predictions_per_seq=20 --vocab_file=vocab.txt [--next_sentence] \
      [--whole_word_masking] [--dupe_factor=10] [--seed=12345]

after which `make_dataset("data/google_train", ...)` reads them. The masking
settings are recorded as given (defaults: those of Google's tool); Google's
flag names `--input_file`, `--do_whole_word_mask` and `--random_seed` work
too. The vocabulary is checked against the records: the largest token id in
a sample of records must be below its size.
"""

import os

from absl import app
from absl import flags

import data_pipeline
from data_pipeline import cli
from data_pipeline import corpus
from data_pipeline import features
from data_pipeline import wordpiece


# Records read per file to check the vocabulary against the ids in them.
SAMPLE_RECORDS = 256


def write_manifest(input_patterns, output_dir: str, *, max_seq_length: int,
                   max_predictions_per_seq: int, vocab_file: str,
                   next_sentence: bool = True, compression: str = "",
                   split: str = "train", whole_word_masking: bool = False,
                   dupe_factor: int = 10, seed: int = 12345,
                   masked_lm_prob: float = 0.15,
                   short_seq_prob: float = 0.1) -> features.Manifest:
    """Counts the records of Google-made files and writes a manifest.

    Args:
        input_patterns: str | list[str]. Globs of the record files.
        output_dir: str. Directory for `manifest.json` (created).
        max_seq_length: int. L the records were made with.
        max_predictions_per_seq: int. P the records were made with.
        vocab_file: str. The BERT `vocab.txt` they were made with.
        next_sentence: bool. Records carry `next_sentence_labels` (Google's
            tool always writes them). Defaults to True.
        compression: str. "" or "GZIP". Defaults to "".
        split: str. "train" or "eval". Defaults to "train".
        whole_word_masking, dupe_factor, seed, masked_lm_prob, short_seq_prob:
            the settings the records were made with (Google's
            `--do_whole_word_mask`, `--dupe_factor`, `--random_seed`, ...),
            recorded in the manifest. Defaults: Google's (False, 10, 12345,
            0.15, 0.1).

    Raises:
        ValueError: no file, the first record does not parse with the given
            lengths, or a sampled record holds an id beyond the vocabulary
            (the file, the id and the flags are named).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (not for --help)
    files = [os.path.abspath(f) for f in corpus.list_files(input_patterns)]
    vocab = wordpiece.WordPieceTokenizer(vocab_file)
    spec = features.mlm_static_feature_spec(max_seq_length,
                                            max_predictions_per_seq,
                                            next_sentence)
    counts = []
    for path in files:
        ds = tf.data.TFRecordDataset(path, compression_type=compression or None)
        for record in ds.take(1):
            try:
                tf.io.parse_single_example(record, spec)
            except (tf.errors.InvalidArgumentError, ValueError) as e:
                raise ValueError(
                    f"First record of {path!r} does not match --max_seq_length="
                    f"{max_seq_length} --max_predictions_per_seq="
                    f"{max_predictions_per_seq} --next_sentence="
                    f"{next_sentence}: {str(e).splitlines()[0]}") from e
        _check_ids(ds, spec, path, vocab_file, vocab.vocab_size)
        counts.append(int(ds.reduce(0, lambda n, _: n + 1)))
    os.makedirs(output_dir, exist_ok=True)
    names = _link_files(files, output_dir)
    manifest = features.Manifest(
        max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq,
        masked_lm_prob=masked_lm_prob, short_seq_prob=short_seq_prob,
        dupe_factor=dupe_factor,
        whole_word_masking=whole_word_masking, next_sentence=next_sentence,
        tokenizer_kind="wordpiece", tokenizer_file=os.path.abspath(vocab_file),
        tokenizer_sha256=vocab.sha256, vocab_size=vocab.vocab_size,
        special_ids=dict(vocab.layout.special_ids),
        reserved_id_ranges=[list(r) for r in vocab.layout.reserved_id_ranges],
        seed=seed, split=split, num_shards=len(files), shard_files=names,
        examples_per_shard=counts, num_examples=sum(counts),
        compression=compression,
        source=f"Google create_pretraining_data.py records: {input_patterns}",
        tool_version=data_pipeline.__version__)
    manifest.write(output_dir)
    return manifest


def _check_ids(ds, spec: dict, path: str, vocab_file: str,
               vocab_size: int) -> None:
    """The largest `input_ids`/`masked_lm_ids` of the first `SAMPLE_RECORDS`
    records must be below `vocab_size` (else training fails much later with
    `indices[..] = N is not in [0, vocab_size)`)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    largest = -1
    for batch in ds.take(SAMPLE_RECORDS).batch(SAMPLE_RECORDS):
        parsed = tf.io.parse_example(batch, spec)
        largest = max(int(tf.reduce_max(parsed["input_ids"])),
                      int(tf.reduce_max(parsed["masked_lm_ids"])))
    if largest >= vocab_size:
        raise ValueError(
            f"{path!r} holds token id {largest}, beyond --vocab_file="
            f"{vocab_file!r} ({vocab_size} tokens, ids 0-{vocab_size - 1}): "
            "pass the vocab.txt the records were made with.")


def _link_files(files: list[str], output_dir: str) -> list[str]:
    """Links each file into `output_dir` (`00000-NAME`); returns the link names."""
    names = []
    for i, path in enumerate(files):
        name = f"{i:05d}-{os.path.basename(path)}"
        link = os.path.join(output_dir, name)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(path, link)
        names.append(name)
    return names


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    m = write_manifest(  # bad flags or files: one line on stderr, exit 2 (cli.run)
        f.input, f.output_dir, max_seq_length=f.max_seq_length,
        max_predictions_per_seq=f.max_predictions_per_seq, vocab_file=f.vocab_file,
        next_sentence=f.next_sentence, compression=f.compression, split=f.split,
        whole_word_masking=f.whole_word_masking, dupe_factor=f.dupe_factor,
        seed=f.seed, masked_lm_prob=f.masked_lm_prob,
        short_seq_prob=f.short_seq_prob)
    print(f"{m.num_examples} records in {m.num_shards} file(s); manifest in "
          f"{f.output_dir}")


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_string("input", None, "Globs of record files.", required=True)
    flags.DEFINE_string("output_dir", None, "Manifest directory.", required=True)
    flags.DEFINE_integer("max_seq_length", 128, "L of the records.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "P of the records.")
    flags.DEFINE_string("vocab_file", None, "BERT vocab.txt.", required=True)
    flags.DEFINE_bool("next_sentence", True, "Records carry NSP labels.")
    flags.DEFINE_enum("compression", "", ["", "GZIP"], "Record compression.")
    flags.DEFINE_enum("split", "train", ["train", "eval"], "Split name.")
    # The settings the records were made with, recorded in the manifest
    # (defaults: those of Google's create_pretraining_data.py).
    flags.DEFINE_bool("whole_word_masking", False, "Records made with "
                      "whole-word masking (Google: --do_whole_word_mask).")
    flags.DEFINE_integer("dupe_factor", 10, "Google's --dupe_factor.")
    flags.DEFINE_integer("seed", 12345, "Google's --random_seed.")
    flags.DEFINE_float("masked_lm_prob", 0.15, "Google's --masked_lm_prob.")
    flags.DEFINE_float("short_seq_prob", 0.1, "Google's --short_seq_prob.")
    for google, ours in (("input_file", "input"), ("random_seed", "seed"),
                         ("do_whole_word_mask", "whole_word_masking")):
        flags.DEFINE_alias(google, ours)


if __name__ == "__main__":
    cli.run(main, define_flags)
