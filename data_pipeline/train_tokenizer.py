r"""Trains the SentencePiece tokenizer the pipeline uses.

Usage:
  python -m data_pipeline.train_tokenizer --input=corpus/*.txt \
      --vocab_size=8000 --output=/tmp/spm

Input is in the corpus format (one sentence per line, blank lines between
documents; blank lines are ignored). Writes PREFIX.model and PREFIX.vocab with
[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
"""

import time

from absl import app
from absl import flags
from absl import logging

from data_pipeline import corpus
from data_pipeline import tokenization

def define_flags() -> None:
    """Defines this CLI's flags (called only when run as a program, so
    importing the module never adds global flags)."""
    flags.DEFINE_string(
        "input", None, "Comma-separated globs of corpus files.", required=True)
    flags.DEFINE_integer(
        "vocab_size", None, "Vocabulary size, special tokens included.",
        lower_bound=6, required=True)
    flags.DEFINE_string(
        "output", None, "Output prefix: writes PREFIX.model and PREFIX.vocab.",
        required=True)
    flags.DEFINE_enum(
        "model_type", "unigram", list(tokenization.MODEL_TYPES),
        "SentencePiece model type.")
    flags.DEFINE_integer("seed", 0, "Seed of the training sentence sample.")
    flags.DEFINE_float(
        "character_coverage", 0.9999, "Fraction of characters covered.",
        lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer(
        "input_sentence_size", 1_000_000,
        "Maximum number of sentences sampled for training.", lower_bound=1)


FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    start = time.perf_counter()
    try:
        files = corpus.list_files(FLAGS.input)
        model_path = tokenization.train_sentencepiece(
            files, FLAGS.vocab_size, FLAGS.output,
            model_type=FLAGS.model_type,
            character_coverage=FLAGS.character_coverage,
            input_sentence_size=FLAGS.input_sentence_size, seed=FLAGS.seed)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    seconds = time.perf_counter() - start
    tokenizer = tokenization.SentencePieceTokenizer(model_path)
    logging.info("Trained %s in %.1f s", model_path, seconds)
    print(f"Wrote {model_path} (vocab_size={tokenizer.vocab_size}, "
          f"sha256={tokenizer.sha256[:12]}…) in {seconds:.1f} s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
