"""A fine-tuning run (`python -m pretraining.finetune`) as the converter's
input: `python -m pretraining.convert --input=RUN --input_format=native
--output_format=hf|google --output=DIR`.

The run directory holds `config.json` (the experiment, with its `model` and
`finetune` sections), `labels.json` (task and label list), `checkpoints/` and
`best/` (the best evaluation's weights, `best/best.json`). The best
checkpoint is exported when there is one, else the newest (`checkpoint=`
picks). Written:
- `hf`: a `BertForSequenceClassification` directory (`formats.hf_classifier`).
- `google`: `bert_model.ckpt` with the head as `run_classifier.py` names it
  (`output_weights` `(num_labels, hidden)`, `output_bias`).
- `native` with a `.keras` path: the whole `BertClassifier`.
The vocabulary is `finetune.tokenizer`, else the one found with
`finetune.init`, unless `--vocab` names one. A multi-task run (one head per
task, Conditional LayerNorm on the task) has no Hugging Face or Google form
and is refused.
"""

import dataclasses
import json
import os

import numpy as np
from absl import logging

from data_pipeline import labelled
from pretraining import checkpoint_names
from pretraining.config import BertConfig
from pretraining.formats import hf_classifier
from pretraining.formats import vocab as vocab_lib
from pretraining.formats.bundle import Bundle, read_json

BEST_DIR = "best"
CHECKPOINTS = ("best", "latest")


@dataclasses.dataclass
class FinetunedModel:
    """A fine-tuning run read back.

    Args:
        bundle: `Bundle`. The encoder (pooler included), by our paths. Required.
        head: `hf_classifier.ClassifierHead`. The classifier, labels and task.
            Required.
        model: `BertClassifier`. The restored Keras model. Required.
        checkpoint: str. The checkpoint prefix read. Required.
    """

    bundle: Bundle
    head: hf_classifier.ClassifierHead
    model: object
    checkpoint: str


def is_finetune_run(path: str) -> bool:
    """Whether `path` is a directory with a fine-tuning run's `config.json`."""
    config = os.path.join(path, "config.json")
    if not os.path.isdir(path) or not os.path.isfile(config):
        return False
    try:
        with open(config, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("finetune"), dict)


def checkpoint_prefix(run_dir: str, checkpoint: str = "best") -> str:
    """`best/ckpt-N` (when `checkpoint="best"` and the run kept one), else
    the newest checkpoint of `checkpoints/`."""
    from pretraining import checkpoints
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}. Received: {checkpoint!r}")
    record = os.path.join(run_dir, BEST_DIR, "best.json")
    if checkpoint == "best" and os.path.isfile(record):
        data = read_json(record)
        prefix = os.path.join(run_dir, BEST_DIR, str(data.get("checkpoint", "")))
        if os.path.isfile(prefix + ".index"):
            logging.info("The best checkpoint: %s (%s %s at step %s).", prefix,
                         data.get("metric"), data.get("value"), data.get("step"))
            return prefix
    prefix = checkpoints.find_prefix(os.path.join(run_dir, "checkpoints"), "--input")
    logging.info("The newest checkpoint: %s.", prefix)
    return prefix


def _vocabulary(finetune: dict, vocab_path: str, where: str):
    path = vocab_path or finetune.get("tokenizer") or ""
    if not path and finetune.get("init"):
        from pretraining.finetune.init_source import read_init
        path = read_init(finetune["init"]).tokenizer
    if not path:
        logging.warning("No tokenizer recorded for %s (pass --vocab): the export has no "
                        "vocabulary.", where)
        return None
    if not os.path.isfile(path):
        raise ValueError(f"{where}: the run's tokenizer {path!r} is gone; pass --vocab=FILE "
                         "(the SentencePiece model or vocab.txt it was fine-tuned with).")
    return vocab_lib.read(path)


def read(run_dir: str, vocab_path: str = "", checkpoint: str = "best") -> FinetunedModel:
    """Reads a fine-tuning run's model, labels and vocabulary.

    Raises:
        ValueError: a multi-task run, a run without labels or checkpoint, or a
            checkpoint that does not restore the model; one line naming it.
    """
    import tensorflow as tf
    from pretraining.finetune.model import build_classifier
    where = os.path.join(run_dir, "config.json")
    data = read_json(where)
    finetune = data["finetune"]
    if len(finetune.get("tasks") or []) > 1:
        raise ValueError(f"{where}: a multi-task run ({len(finetune['tasks'])} tasks, "
                         "Conditional LayerNorm on the task) has no Hugging Face or Google "
                         "form; fine-tune one task per run to export it.")
    if not isinstance(data.get("model"), dict):
        raise ValueError(f"{where} has no `model` section: not a finished fine-tuning run.")
    config = BertConfig.from_dict(data["model"], f"{where}: model")
    labels_path = os.path.join(run_dir, labelled.LABELS_FILE)
    if not os.path.isfile(labels_path):
        raise ValueError(f"No {labelled.LABELS_FILE} in {run_dir}: not a fine-tuning run "
                         "directory.")
    spec = labelled.LabelSpec.load(labels_path)
    task, labels = spec.task, list(spec.labels)
    if task == "regression":
        labels = [finetune.get("label_field") or "label"]
    prefix = checkpoint_prefix(run_dir, checkpoint)
    model = build_classifier(config, len(labels), finetune.get("classifier_dropout", 0.1))
    status = tf.train.Checkpoint(model=model).read(prefix)
    try:
        status.expect_partial().assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(f"{prefix} does not restore the run's model ({str(e)[:200]}): "
                         "the checkpoint and config.json disagree.") from None
    weights = {v.path: np.asarray(v.numpy(), np.float32) for v in model.encoder.weights
               if checkpoint_names.lookup(v.path) is not None}
    layer = model.heads[0]
    head = hf_classifier.ClassifierHead(task, labels, layer.output_weights.numpy(),
                                        layer.output_bias.numpy())
    bundle = Bundle(config, weights, _vocabulary(finetune, vocab_path, where), prefix)
    return FinetunedModel(bundle, head, model, prefix)


def export(run_dir: str, output: str, output_format: str, vocab_path: str = "",
           checkpoint: str = "best") -> tuple:
    """Writes a fine-tuning run as `output_format` (module docstring).

    Returns:
        `(what was written, FinetunedModel)`.
    """
    found = read(run_dir, vocab_path, checkpoint)
    if output_format in ("hf", "google"):
        written = hf_classifier.write_with_head(output, output_format, found.bundle,
                                                found.head)
    elif output.endswith(".keras"):
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        found.model.save(output)
        written = output
    else:
        raise ValueError(f"--output={output!r}: a fine-tuning run is already in the native "
                         "format; --output_format=native writes it as a .keras file only "
                         "(a path ending in .keras), or use hf or google.")
    logging.info("Exported %s (%s, %d %s labels) to %s.", found.checkpoint, output_format,
                 found.head.num_labels, found.head.task, written)
    return written, found
