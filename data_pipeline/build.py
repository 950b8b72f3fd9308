r"""Builds TFRecord shards + manifest.json from a corpus.

Usage:
  python -m data_pipeline.build --task=mlm --input=corpus.txt \
      --tokenizer=spm.model --output_dir=/tmp/data --max_seq_length=128 \
      --max_predictions_per_seq=20 --seed=12345 [--num_shards=4] \
      [--eval_fraction=0.05] [--masking=dynamic] [--next_sentence] \
      [--input_format=jsonl --text_field=text] [--split_sentences] \
      [--nowhole_word_masking] \
      [--condition_field=label [--condition_labels=a,b] | \
       --condition_from_path='([^/]+)/[^/]+$'] \
      [--tokenizer=vocab.txt --nodo_lower_case --chinese_segmenter=jieba] \
      [--num_workers=4] [--overwrite]
  python -m data_pipeline.build ... --runner=DataflowRunner \
      --beam_option=--project=P --beam_option=--region=R ...  (or after --)

Writes OUTPUT_DIR/train/ (and OUTPUT_DIR/eval/) each holding
shard-*-of-*.tfrecord and manifest.json; see `builder.build`. With --runner
the units run on Apache Beam (`beam_build`); the output is the same bytes.

Exit status: 0 done; 2 bad flag or input, an --output_dir that is a file,
or a full disk (one line on stderr; nothing left behind).
"""

import importlib
import os
import time

from absl import app
from absl import flags

from data_pipeline import cli
from data_pipeline import features
from data_pipeline import sources

# `builder` and `tasks` import TensorFlow: imported where used, so that
# `--help` answers at once.


def build_mlm(input_patterns, tokenizer_path: str, output_dir: str, *,
              max_seq_length: int = 128, max_predictions_per_seq: int = 20,
              masked_lm_prob: float = 0.15, short_seq_prob: float = 0.1,
              dupe_factor: int = 1, seed: int = 12345, num_shards: int = 1,
              eval_fraction: float = 0.0, source: str | None = None,
              compression: str = "", overwrite: bool = False,
              masking: str = "static", next_sentence: bool = False,
              num_workers: int = 1,
              whole_word_masking: bool = True) -> dict[str, features.Manifest]:
    """Builds masked-LM shards from corpus-format files (see `builder.build`
    for the arguments; `source` is the manifest description)."""
    from data_pipeline import builder, tasks  # pylint: disable=import-outside-toplevel
    task = tasks.TaskConfig(
        task="mlm", masking=masking, max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq,
        masked_lm_prob=masked_lm_prob, short_seq_prob=short_seq_prob,
        next_sentence=next_sentence, dupe_factor=dupe_factor,
        whole_word_masking=whole_word_masking)
    return builder.build(
        input_patterns, tokenizer_path, output_dir, task=task, seed=seed,
        num_shards=num_shards, eval_fraction=eval_fraction,
        compression=compression, overwrite=overwrite,
        num_workers=num_workers, description=source)


def load_segmenter(spec: str):
    """`jieba` or `module:function` -> a callable str -> list of words."""
    if not spec:
        return None
    if spec == "jieba":
        try:
            jieba = importlib.import_module("jieba")
        except ImportError as e:
            raise ValueError("--chinese_segmenter=jieba needs the optional "
                             "package: pip install jieba") from e
        return jieba.lcut
    module_name, _, function = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"--chinese_segmenter={spec!r} cannot be loaded "
                         f"({e}). Use 'jieba' or 'module:function'.") from e


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_enum("task", "mlm", list(features.TASKS), "Record task.")
    flags.DEFINE_string("input", None, "Comma-separated globs of input files, "
                        "or a TFDS name with --input_format=tfds.",
                        required=True)
    flags.DEFINE_enum("input_format", "text", list(sources.INPUT_FORMATS),
                      "text: sentence per line, blank line between documents; "
                      "lines: one document per line; jsonl; tfds.")
    flags.DEFINE_string("text_field", "text", "JSONL/TFDS text field.")
    flags.DEFINE_string("target_field", None, "JSONL target field: seq2seq "
                        "(source=--text_field, target) pairs.")
    flags.DEFINE_bool("split_sentences", False, "Split text into sentences "
                      "(English . ! ?, Chinese 。！？).")
    flags.DEFINE_string("tfds_data_dir", None, "TFDS data directory.")
    flags.DEFINE_string("tfds_split", "train", "TFDS split.")
    flags.DEFINE_string("condition_field", None, "JSONL field / TFDS feature "
                        "of each document's condition: a class label (string "
                        "or integer; a TFDS ClassLabel) or a list of floats "
                        "(a vector). Records then carry `condition`.")
    flags.DEFINE_list("condition_labels", None, "Class labels in id order "
                      "(a,b,c); other labels are refused. Default: the "
                      "sorted labels found.")
    flags.DEFINE_string("condition_from_path", None, "Regex with one capture "
                        "group: each input file's class label, searched in "
                        "its path (e.g. '([^/]+)/[^/]+$': its folder).")
    flags.DEFINE_string("tokenizer", None, "SentencePiece .model or BERT "
                        "vocab.txt.", required=True)
    flags.DEFINE_bool("do_lower_case", None, "WordPiece: lower-case (default: "
                      "tokenizer_config.json beside vocab.txt, else cased when "
                      "the vocabulary has upper-case pieces).")
    flags.DEFINE_bool("strip_accents", None, "WordPiece: strip accents "
                      "(default: as --do_lower_case).")
    flags.DEFINE_string("chinese_segmenter", "", "WordPiece whole-word "
                        "masking for Chinese: 'jieba' or 'module:function'.")
    flags.DEFINE_string("output_dir", None, "Output directory.", required=True)
    flags.DEFINE_integer("max_seq_length", 128, "Sequence length L.")
    flags.DEFINE_integer("max_predictions_per_seq", 20,
                         "Masked positions P per sequence.")
    flags.DEFINE_enum("masking", "static", ["static", "dynamic"],
                      "mlm: masks in the records, or drawn in tf.data.")
    flags.DEFINE_bool("next_sentence", False, "mlm: NSP sentence pairs.")
    flags.DEFINE_bool("whole_word_masking", True, "mlm: mask whole words as "
                      "units (ours); false: every word piece on its own "
                      "(Google's default). Static and dynamic masking.")
    flags.DEFINE_integer("seed", 12345, "Seed of every random choice.")
    flags.DEFINE_integer("num_shards", 1, "Training shard files.")
    flags.DEFINE_float("eval_fraction", 0.0,
                       "Fraction of documents held out for eval/.")
    flags.DEFINE_float("masked_lm_prob", 0.15, "Fraction of tokens masked.")
    flags.DEFINE_float("short_seq_prob", 0.1,
                       "Probability of a shorter sequence.")
    flags.DEFINE_integer("dupe_factor", 1,
                         "Times each training document is packed/masked.")
    flags.DEFINE_enum("compression", "", ["", "GZIP"], "Shard compression.")
    flags.DEFINE_integer("num_workers", 1, "Worker processes (output is "
                         "identical for any number).")
    flags.DEFINE_bool("overwrite", False, "Replace a build already in "
                      "--output_dir (refused otherwise).")
    flags.DEFINE_enum("runner", None, ["DirectRunner", "DataflowRunner",
                                       "FlinkRunner", "SparkRunner"],
                      "Run the units on Apache Beam with this runner "
                      "(pip install -e '.[beam]'); default: this machine's "
                      "process pool. Same output bytes.")
    flags.DEFINE_multi_string("beam_option", [], "A Beam pipeline option, "
                              "e.g. --beam_option=--project=P (repeatable; "
                              "also accepted after --).")
    flags.DEFINE_integer("docs_per_unit", 256, "Documents per work unit "
                         "(changing it changes the output).")
    # Google's create_pretraining_data.py names: aliases, or refused with ours.
    for google, ours in (("input_file", "input"), ("vocab_file", "tokenizer"),
                         ("random_seed", "seed"),
                         ("do_whole_word_mask", "whole_word_masking")):
        flags.DEFINE_alias(google, ours)
    flags.DEFINE_string("output_file", None, "Google's flag: refused, use "
                        "--output_dir.")


FLAGS = flags.FLAGS


def run(f=FLAGS, beam_args=()) -> dict[str, features.Manifest]:
    """Builds from the parsed flags `f` and Beam options given after `--`
    (ValueError/TypeError on bad input)."""
    if f.output_file:
        raise ValueError(f"--output_file={f.output_file!r} is Google's flag: use "
                         "--output_dir instead (shards and manifest.json go in a "
                         "directory).")
    from data_pipeline import builder, tasks  # pylint: disable=import-outside-toplevel
    if f.target_field and f.task != "seq2seq":
        raise ValueError("--target_field applies to --task=seq2seq only. "
                         f"Received: task={f.task!r}")
    source = sources.SourceConfig(
        input_format=f.input_format, text_field=f.text_field,
        target_field=f.target_field, split_sentences=f.split_sentences,
        tfds_data_dir=f.tfds_data_dir, tfds_split=f.tfds_split,
        condition_field=f.condition_field,
        condition_from_path=f.condition_from_path,
        condition_labels=(tuple(f.condition_labels)
                          if f.condition_labels is not None else None))
    task = tasks.TaskConfig(
        task=f.task, masking=f.masking, max_seq_length=f.max_seq_length,
        max_predictions_per_seq=f.max_predictions_per_seq,
        masked_lm_prob=f.masked_lm_prob, short_seq_prob=f.short_seq_prob,
        next_sentence=f.next_sentence, pairs=bool(f.target_field),
        dupe_factor=f.dupe_factor, whole_word_masking=f.whole_word_masking)
    options = {"do_lower_case": f.do_lower_case, "strip_accents": f.strip_accents,
               "segmenter": load_segmenter(f.chinese_segmenter)}
    if f.tokenizer.endswith(".model"):
        options = {}
    return builder.build(
        f.input, f.tokenizer, f.output_dir, task=task, source=source,
        tokenizer_options=options, seed=f.seed, num_shards=f.num_shards,
        eval_fraction=f.eval_fraction, compression=f.compression,
        num_workers=f.num_workers, docs_per_unit=f.docs_per_unit,
        overwrite=f.overwrite, runner=f.runner,
        beam_options=tuple(f.beam_option) + tuple(beam_args))


def main(argv):
    if len(argv) > 1 and not FLAGS.runner:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]} (Beam options "
                             "after -- need --runner)")
    # TensorFlow is imported here, before the clock starts: the time reported
    # is the build's own.
    from data_pipeline import builder  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    start = time.perf_counter()
    manifests = run(beam_args=argv[1:])  # bad flags, input or a full disk: one line, exit 2 (cli.run)
    seconds = time.perf_counter() - start
    total = sum(m.num_examples for m in manifests.values())
    for name, manifest in manifests.items():
        print(f"{name}: {manifest.num_examples} instances in "
              f"{manifest.num_shards} shard(s) -> "
              f"{os.path.join(FLAGS.output_dir, name)}")
    print(f"{total} instances in {seconds:.1f} s "
          f"({total / max(seconds, 1e-9):.0f} instances/s)")


if __name__ == "__main__":
    cli.run(main, define_flags)
