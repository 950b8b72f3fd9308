"""`--init`: the encoder, its config and tokenizer, from one of our run
directories, a Google BERT checkpoint directory or a Hugging Face directory,
through the converter's readers (`pretraining.convert.load`): no separate
conversion step.

The format is told from the files: `config.json` with a `model` section (our
run) or a checkpoint beside `bert_config.json` in our object-graph layout →
`native`; `config.json` + `model.safetensors`/`pytorch_model.bin` → `hf`;
a TF1 checkpoint with Google's `bert/...` names → `google`.

A Google `run_classifier.py` checkpoint (`output_weights` `[num_labels,
hidden]` and `output_bias` beside `bert/...`) or a Hugging Face
`BertForSequenceClassification` directory (`classifier.weight`/`.bias`) also
carries a classifier head (`pretraining.formats.hf_classifier.read_head`):
`assign_head` starts the task's head from it when the label counts agree.
"""

import dataclasses
import json
import os

from absl import logging

from pretraining.config import BertConfig

# Encoder variables fine-tuning starts afresh: Conditional LayerNorm's
# (zero-initialised) and the dropout RNG state.
_FRESH = ("condition", "gamma_dense", "beta_dense", "seed_generator")
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclasses.dataclass
class InitSource:
    """What `--init` holds.

    Args:
        path: str. As given. Required.
        kind: str. `native`, `google` or `hf`. Required.
        config: `BertConfig`. The encoder's config. Required.
        weights: dict. Our variable path → array (encoder only). Required.
        tokenizer: str. The tokenizer file found with it ("" when none).
            Required.
        head: `hf_classifier.ClassifierHead` or None. The classifier of a
            Google classifier checkpoint or an HF `BertForSequenceClassification`
            directory. Defaults to None: none there.
    """

    path: str
    kind: str
    config: BertConfig
    weights: dict
    tokenizer: str
    head: object = None


def _no_encoder(path: str, why: str) -> ValueError:
    return ValueError(f"--init={path!r} holds no BERT encoder ({why}): give one of our run "
                      "directories, a Google BERT checkpoint directory (bert_model.ckpt + "
                      "bert_config.json) or a Hugging Face directory (config.json + "
                      "model.safetensors).")


def detect_kind(path: str) -> str:
    """`native`, `google` or `hf` for the files at `path` (see module doc)."""
    import tensorflow as tf
    from pretraining import checkpoints
    if not path or not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise _no_encoder(path, "nothing there")
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    run_config = os.path.join(directory, "config.json")
    if os.path.isfile(run_config):
        try:
            with open(run_config, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            return "native"
        if any(os.path.isfile(os.path.join(directory, n)) for n in _HF_WEIGHTS):
            return "hf"
    try:
        prefix = checkpoints.find_prefix(path, "--init")
        google = checkpoints.is_google_layout(prefix)
    except (ValueError, tf.errors.OpError):
        raise _no_encoder(path, "no checkpoint, config.json or bert_config.json there") \
            from None
    if google:
        return "google"
    names = [n for n, _ in tf.train.list_variables(prefix)]
    if not any(n.startswith("model/encoder/") for n in names):
        raise _no_encoder(path, f"{prefix} has no model/encoder/ or bert/ variables")
    return "native"


def read_init(path: str) -> InitSource:
    """Reads the encoder of `--init` (weights, config, tokenizer).

    Raises:
        ValueError: no encoder there, or files that do not read; one line
            naming `--init` and the path.
    """
    from pretraining import convert
    kind = detect_kind(path)
    try:
        bundle = convert.load(path, kind, heads="encoder")
    except ValueError as e:
        raise ValueError(f"--init={path!r} ({kind}): {' '.join(str(e).split())}") from None
    weights = {p: v for p, v in bundle.weights.items() if p.startswith("bert/")}
    if not weights:
        raise _no_encoder(path, "no bert/ weights")
    tokenizer = bundle.vocab.source if bundle.vocab is not None else ""
    if bundle.vocab is not None and bundle.vocab.resized:
        tokenizer = ""
    logging.info("--init: the %s encoder of %s (%d tensors)%s.", kind, bundle.source,
                 len(weights), f", tokenizer {tokenizer}" if tokenizer else "")
    return InitSource(path, kind, bundle.config, weights, tokenizer, read_head(path, kind))


def read_head(path: str, kind: str):
    """The classifier head stored with `--init` (`hf_classifier.ClassifierHead`;
    Google and HF layouts), or None."""
    from pretraining.formats import hf_classifier
    try:
        head = hf_classifier.read_head(path, kind)
    except ValueError as e:
        raise ValueError(f"--init={path!r} ({kind}): its classifier head does not read: "
                         f"{' '.join(str(e).split())}") from None
    if head is not None:
        logging.info("--init: %s has a %s classifier head with %d output(s).", path, head.task,
                     head.num_labels)
    return head


def assign_head(model, source: InitSource, specs) -> bool:
    """Starts `model`'s classifier (a `BertClassifier`) from `source.head`
    when there is one and its output count is the task's label count; else
    the head keeps its fresh initial values, and the log says why. Several
    tasks (one head each) always start afresh. Returns whether it was set.

    Args:
        model: `BertClassifier`. Required.
        source: `InitSource`. Required.
        specs: list of `labelled.LabelSpec`. The tasks' labels. Required.
    """
    head = source.head
    if head is None:
        return False
    if len(specs) > 1:
        logging.info("--init=%r has a %d-output classifier; the %d tasks' heads start afresh "
                     "(one head per task).", source.path, head.num_labels, len(specs))
        return False
    spec, layer = specs[0], model.heads[0]
    if head.num_labels != spec.num_labels:
        logging.info("--init=%r has a %d-output classifier, the %s task has %d label(s): "
                     "the head starts afresh.", source.path, head.num_labels, spec.task,
                     spec.num_labels)
        return False
    if tuple(head.output_weights.shape) != tuple(layer.output_weights.shape):
        raise ValueError(f"--init={source.path!r}: the classifier's output_weights are "
                         f"{tuple(head.output_weights.shape)}, the model expects "
                         f"{tuple(layer.output_weights.shape)}.")
    layer.output_weights.assign(head.output_weights)
    layer.output_bias.assign(head.output_bias)
    named = [label for label in head.labels if not label.startswith("LABEL_")]
    if named and spec.task != "regression" and list(head.labels) != list(spec.labels):
        logging.warning("--init=%r: the classifier's labels %s are not the task's %s; output "
                        "i is taken as label i.", source.path, list(head.labels)[:10],
                        list(spec.labels)[:10])
    logging.info("--init: the classifier head starts from %s's (%d output(s), %s).",
                 source.path, head.num_labels, head.task)
    return True


def assign_encoder(encoder, source: InitSource) -> None:
    """Sets `encoder`'s weights from `source`. Every weight of the encoder
    must be there, but for the Conditional LayerNorm's (zero at the start of
    fine-tuning) and the dropout RNG state."""
    missing = []
    for v in encoder.weights:
        value = source.weights.get(v.path)
        if value is None:
            if not any(part in v.path for part in _FRESH):
                missing.append(v.path)
            continue
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"--init={source.path!r}: {v.path} has shape "
                             f"{tuple(value.shape)}, the model expects {tuple(v.shape)}.")
        v.assign(value)
    if missing:
        raise _no_encoder(source.path, f"missing {missing[:3]}")
