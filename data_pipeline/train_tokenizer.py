r"""Trains the SentencePiece tokenizer the pipeline uses.

Usage:
  python -m data_pipeline.train_tokenizer --input=corpus/*.txt \
      --vocab_size=8000 --output=/tmp/spm

Input is in the corpus format (one sentence per line, blank lines between
documents; blank lines are ignored). Writes PREFIX.model and PREFIX.vocab with
[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4. Lines longer than
SentencePiece's 4192 bytes are skipped by it (a warning gives the count).

Exit status: 0 done; 2 bad flag or corpus (empty, not UTF-8), one line on
stderr, and no output directory left behind.
"""

import time

from absl import app
from absl import flags
from absl import logging

from data_pipeline import cli
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


def run(f=FLAGS) -> str:
    """Trains from the parsed flags `f`; returns the `.model` path."""
    files = corpus.list_files(f.input)
    return tokenization.train_sentencepiece(
        files, f.vocab_size, f.output, model_type=f.model_type,
        character_coverage=f.character_coverage,
        input_sentence_size=f.input_sentence_size, seed=f.seed)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    start = time.perf_counter()
    model_path = run()  # bad input: one line on stderr, exit 2 (cli.run)
    seconds = time.perf_counter() - start
    tokenizer = tokenization.SentencePieceTokenizer(model_path)
    logging.info("Trained %s in %.1f s", model_path, seconds)
    print(f"Wrote {model_path} (vocab_size={tokenizer.vocab_size}, "
          f"sha256={tokenizer.sha256[:12]}…) in {seconds:.1f} s")


if __name__ == "__main__":
    cli.run(main, define_flags)
