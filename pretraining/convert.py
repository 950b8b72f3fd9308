"""Convert BERT checkpoints between Google's TF layout, Hugging Face and ours.

    python -m pretraining.convert --input=PATH --input_format=google|hf|native \\
        --output=PATH --output_format=google|hf|native [--config=bert_config.json] \\
        [--heads=all|encoder] [--ema] [--vocab=FILE] [--keep_tokens=FILE] [--add_tokens=FILE]

- `google`: a directory or prefix of `bert_model.ckpt` with `bert_config.json`
  (+ `vocab.txt`) beside it.
- `hf`: a directory with `config.json` + `model.safetensors` (+ `vocab.txt` or
  `spiece.model`); written with `tokenizer.json`, `tokenizer_config.json` and
  `special_tokens_map.json`, so `transformers` loads the tokenizer too.
- `native`: a run directory / `checkpoints/` directory / checkpoint prefix
  written by our trainer (config from the run's `config.json`), or a `.keras`
  file; written as a `.keras` file or a checkpoint directory + `bert_config.json`.
  A fine-tuning run directory (`python -m pretraining.finetune`) is exported
  with its classifier: hf → `BertForSequenceClassification` (`id2label`,
  `problem_type`), google → `output_weights`/`output_bias` as `run_classifier.py`.
  Between hf and google a classifier stays one (labels: `config.json`'s
  `id2label`, or a `labels.json` beside a Google checkpoint).

Every variable is mapped by its Keras path through `checkpoint_names`. A model
with an option Google's or Hugging Face's BERT cannot run (`model.
layer_norm_position="pre"`, `model.feed_forward="glu"`) is refused for those
formats (`formats.bundle.check_holdable`); native holds every option.
Exit status: 0 done, 2 bad flag, file or config (one-line message on stderr).
"""

import dataclasses
import os

from absl import flags, logging

from pretraining import cli
from pretraining.config import BertConfig
from pretraining.config_base import require_choice
from pretraining.formats import hf_classifier, huggingface
from pretraining.formats import vocab as vocab_lib
from pretraining.formats.bundle import HEADS, Bundle, assign, build_model, resize_vocabulary
from pretraining.formats.bundle import check_holdable, untabled

FORMATS = ("google", "hf", "native")


@dataclasses.dataclass
class ConversionResult:
    """What `convert` wrote.

    Args:
        output: str. The checkpoint prefix / file written. Required.
        config: `BertConfig` of the written model. Required.
        head: bool. Whether the masked-LM head was written. Required.
        not_representable: list of str. Our variable paths left out because
            the output format has no name for them. Required.
    """

    output: str
    config: BertConfig
    head: bool
    not_representable: list


def load(path: str, input_format: str, config_path: str = "", heads: str = "all",
         ema: bool = False, vocab_path: str = "") -> Bundle:
    """Reads a model in any format into a `Bundle`.

    Args:
        path: input file, prefix or directory. Required.
        input_format: `google`, `hf` or `native`. Required.
        config_path: str. A Google `bert_config.json` or a Hugging Face
            `config.json` to use instead of the one found beside the input. Defaults to `''`.
        heads: `all` (the masked-LM head when the input has one) or `encoder`. Defaults to `'all'`.
        ema: bool. Native checkpoints: the EMA averages instead of the raw weights.
            Defaults to `False`.
        vocab_path: str. Vocabulary file instead of the one found beside the input.
            Defaults to `''`.
    """
    require_choice("input_format", input_format, FORMATS)
    require_choice("heads", heads, HEADS)
    if ema and input_format != "native":
        raise ValueError(f"--ema reads the averages of our trainer's checkpoints; it needs "
                         f"input_format='native'. Received: input_format={input_format!r}")
    if not path or not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise ValueError(f"Input not found: {path!r}")
    config = huggingface.read_config(config_path, input_format) if config_path else None
    from pretraining.formats import google, native  # TensorFlow: not for --help
    if input_format == "google":
        return google.read(path, config, config_path, heads, vocab_path)
    if input_format == "hf":
        return huggingface.read(path, config, config_path, heads, vocab_path)
    return native.read(path, config, config_path, heads, ema, vocab_path)


def save(bundle: Bundle, path: str, output_format: str) -> ConversionResult:
    """Writes a `Bundle` in `output_format`; reports what the format cannot hold."""
    require_choice("output_format", output_format, FORMATS)
    check_holdable(bundle.config, output_format)
    if not path:
        raise ValueError("`output` must name a file or directory. Received: output=''")
    keras_file = output_format == "native" and path.endswith(".keras")
    if not keras_file and os.path.isfile(path):
        raise ValueError(f"--output={path!r} is an existing file; the {output_format} format "
                         "writes a directory: pass a new or existing directory.")
    if keras_file and os.path.isdir(path):
        raise ValueError(f"--output={path!r} is an existing directory; a .keras output is a "
                         "file: pass a file path.")
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise ValueError(f"--output={path!r}: {parent!r} is a file, not a directory.")
    left_out = []
    if output_format != "native":
        left_out = untabled(bundle)
        if left_out:
            logging.warning("Not representable in the %s format, left out: %s", output_format,
                            left_out)
        config = bundle.config
        extras = {name: getattr(config, name) for name, default in (
            ("attention_mask_type", "bidirectional"), ("condition_size", 0),
            ("condition_num_classes", 0))
            if getattr(config, name) != default}
        if extras:
            logging.warning("Config fields with no %s equivalent (not written): %s",
                            output_format, extras)
    from pretraining.formats import google, native  # TensorFlow: not for --help
    if output_format == "google":
        written = google.write(path, bundle)
    elif output_format == "hf":
        written = huggingface.write(path, bundle)
    else:
        written = native.write(path, bundle)
    logging.info("Wrote %s (%s, %s).", written, output_format,
                 "encoder + masked-LM head" if bundle.has_head else "encoder only")
    return ConversionResult(written, bundle.config, bundle.has_head, left_out)


def to_keras(bundle: Bundle):
    """The bundle as a Keras model: `BertPretrainer` with a head (and NSP when
    the bundle has it), else `BertEncoder`."""
    model = build_model(bundle.config, head=bundle.has_head, nsp=bundle.has_nsp)
    assign(model, bundle.weights, bundle.source)
    return model


def convert(input_path: str, input_format: str, output_path: str, output_format: str,
            config_path: str = "", heads: str = "all", ema: bool = False,
            vocab_path: str = "", keep_tokens: str = "", add_tokens: str = "",
            ) -> ConversionResult:
    """Reads `input_path`, optionally resizes the vocabulary, writes `output_path`.

    `keep_tokens`: file of ids to keep (one a line, in the new order);
    `add_tokens`: file of tokens to append (rows start at the mean embedding);
    with both, the ids are kept first.
    Other arguments as in `load`. A fine-tuning run (`pretraining.finetune`)
    as native input is exported with its classifier (`formats.finetuned_run`):
    hf → `BertForSequenceClassification`, google → `run_classifier.py` names.
    """
    from pretraining.formats import finetuned_run
    if input_format == "native" and finetuned_run.is_finetune_run(input_path):
        require_choice("output_format", output_format, FORMATS)
        if ema or keep_tokens or add_tokens or config_path or heads != "all":
            raise ValueError(f"--input={input_path!r} is a fine-tuning run: it is exported "
                             "whole; --ema, --keep_tokens, --add_tokens, --config and --heads "
                             "do not apply to it.")
        written, found = finetuned_run.export(input_path, output_path, output_format,
                                              vocab_path)
        return ConversionResult(written, found.bundle.config, False, [])
    bundle = load(input_path, input_format, config_path, heads, ema, vocab_path)
    if keep_tokens or add_tokens:
        bundle = resize_vocabulary(
            bundle, vocab_lib.read_id_file(keep_tokens) if keep_tokens else None,
            vocab_lib.read_token_file(add_tokens) if add_tokens else None)
    # A classifier (HF BertForSequenceClassification, Google run_classifier) stays one.
    head = (hf_classifier.read_head(input_path, input_format)
            if heads == "all" and output_format in ("hf", "google") else None)
    if head is not None:
        written = hf_classifier.write_with_head(output_path, output_format, bundle, head)
        logging.info("Wrote %s (%s classifier, %d %s labels).", written, output_format,
                     head.num_labels, head.task)
        return ConversionResult(written, bundle.config, False, untabled(bundle))
    return save(bundle, output_path, output_format)


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_string("input", None, "Input checkpoint: file, prefix or directory.")
    flags.DEFINE_string("input_format", None, f"One of {FORMATS}.")
    flags.DEFINE_string("output", None, "Output: directory (google, hf, native checkpoint) or "
                        "a .keras file (native).")
    flags.DEFINE_string("output_format", None, f"One of {FORMATS}.")
    flags.DEFINE_string("config", "", "bert_config.json (Google) or config.json (Hugging "
                        "Face) to use instead of the input's own.")
    flags.DEFINE_string("heads", "all", "all: encoder + masked-LM head (when the input has "
                        "one); encoder: the encoder only.")
    flags.DEFINE_bool("ema", False, "Native input: take the EMA averages, not the raw weights.")
    flags.DEFINE_string("vocab", "", "Vocabulary (vocab.txt or SentencePiece .model) instead "
                        "of the one found beside the input.")
    flags.DEFINE_string("keep_tokens", "", "File of token ids to keep, one a line, in new "
                        "order.")
    flags.DEFINE_string("add_tokens", "", "File of tokens to append, one a line.")


def main(argv):
    f = flags.FLAGS
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    for name in ("input", "input_format", "output", "output_format"):
        if not getattr(f, name):
            raise ValueError(f"--{name} is required.")
    require_choice("--input_format", f.input_format, FORMATS)
    require_choice("--output_format", f.output_format, FORMATS)
    require_choice("--heads", f.heads, HEADS)
    result = convert(f.input, f.input_format, f.output, f.output_format, f.config, f.heads,
                     f.ema, f.vocab, f.keep_tokens, f.add_tokens)
    print(f"Wrote {result.output} ({f.output_format}, "
          f"{'with' if result.head else 'without'} masked-LM head, "
          f"vocab_size={result.config.vocab_size}).")


if __name__ == "__main__":
    cli.run(main, define_flags)  # bad flags or files: one line, exit 2
