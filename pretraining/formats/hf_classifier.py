"""Sequence-classification heads in the foreign formats: Hugging Face
`BertForSequenceClassification` directories and Google `run_classifier.py`
checkpoints.

The head is the pooled `[CLS]` output → dropout → one dense layer. All three
layouts store its matrix the same way round, `[num_labels, hidden]`:
Google's `output_weights` / `output_bias` (top-level names beside `bert/...`),
Hugging Face's `classifier.weight` / `classifier.bias` (a `torch.nn.Linear`),
and ours (`ClassifierHead.output_weights`), so no transpose happens anywhere:
`logits = pooled @ output_weights.T + output_bias`.

A Hugging Face directory carries the labels and the task in `config.json`:
`id2label` / `label2id` (names in id order), `num_labels` and
`problem_type` (`single_label_classification`, `multi_label_classification`,
`regression`). Logits mean the same in both libraries: softmax for single
label; for multi-label a class is predicted where its logit is above 0 (the
threshold of both our ZLPR loss and of sigmoid + BCE at 0.5); regression has
one output.

Example:
```python
head = ClassifierHead("single_label", ["neg", "pos"], weights, bias)
write("export/", encoder_bundle, head)   # transformers loads it as is
bundle, head = read("export/")
```
"""

import dataclasses
import json
import os

import numpy as np
from absl import logging

from pretraining.formats import huggingface
from pretraining.formats.bundle import Bundle, check_holdable

TASKS = ("single_label", "multi_label", "regression")
# Ours → Hugging Face's `problem_type`.
PROBLEM_TYPES = {"single_label": "single_label_classification",
                 "multi_label": "multi_label_classification", "regression": "regression"}
HF_WEIGHT, HF_BIAS = "classifier.weight", "classifier.bias"
GOOGLE_WEIGHT, GOOGLE_BIAS = "output_weights", "output_bias"
ARCHITECTURE = "BertForSequenceClassification"
LABELS_FILE = "labels.json"  # As a fine-tuning run's (data_pipeline.labelled).


@dataclasses.dataclass
class ClassifierHead:
    """A classification or regression head, independent of any file format.

    Args:
        task: str. `single_label`, `multi_label` or `regression`. Required.
        labels: list of str. The label names in id order (regression: one
            name, e.g. the label field). Required.
        output_weights: np.ndarray. `(num_labels, hidden)` float32, Google's
            `output_weights` layout. Required.
        output_bias: np.ndarray. `(num_labels,)` float32. Required.
    """

    task: str
    labels: list
    output_weights: np.ndarray
    output_bias: np.ndarray

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}. Received: task={self.task!r}")
        self.output_weights = np.asarray(self.output_weights, np.float32)
        self.output_bias = np.asarray(self.output_bias, np.float32)
        rows = self.output_weights.shape[0] if self.output_weights.ndim == 2 else -1
        if rows < 1 or self.output_bias.shape != (rows,):
            raise ValueError(f"output_weights must be (num_labels, hidden) and output_bias "
                             f"(num_labels,). Received: {self.output_weights.shape} and "
                             f"{self.output_bias.shape}")
        if len(self.labels) != rows or len(set(self.labels)) != rows:
            raise ValueError(f"labels must name the {rows} outputs once each. Received: "
                             f"{list(self.labels)[:20]}")
        if self.task == "regression" and rows != 1:
            raise ValueError(f"A regression head has one output. Received: {rows} outputs")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        """`(batch, hidden)` pooled outputs → `(batch, num_labels)` logits."""
        return np.asarray(pooled, np.float32) @ self.output_weights.T + self.output_bias


def hf_config(bundle: Bundle, head: ClassifierHead) -> dict:
    """The `config.json` of a `BertForSequenceClassification`: the encoder's
    fields (as `huggingface.hf_config`), the labels and the problem type."""
    config = huggingface.hf_config(bundle)
    config.update({
        "architectures": [ARCHITECTURE],
        "id2label": {str(i): name for i, name in enumerate(head.labels)},
        "label2id": {name: i for i, name in enumerate(head.labels)},
        "num_labels": head.num_labels,
        "problem_type": PROBLEM_TYPES[head.task],
        "classifier_dropout": None,
    })
    return config


def write(directory: str, bundle: Bundle, head: ClassifierHead) -> str:
    """Writes a `BertForSequenceClassification` directory: `config.json`,
    `model.safetensors` (encoder with its pooler + `classifier.*`) and the
    vocabulary and tokenizer files. Returns the weights file.

    The bundle's masked-LM/NSP heads, if any, are not written; a bundle whose
    pooler was freshly initialised (read from a `BertForMaskedLM` save) is
    refused, since the classifier reads the pooler."""
    from safetensors.numpy import save_file
    check_holdable(bundle.config, "hf")
    if bundle.fresh:
        raise ValueError(f"{bundle.source} has no trained pooler ({list(bundle.fresh)}); a "
                         "classifier export needs the pooler the head was trained on.")
    hidden = bundle.config.hidden_size
    if head.output_weights.shape[1] != hidden:
        raise ValueError(f"The classifier's output_weights are {head.output_weights.shape}; "
                         f"the encoder's hidden_size is {hidden}: (num_labels, {hidden}) "
                         "expected.")
    tensors = {}
    for entry, value in bundle.exported().values():
        if entry.part == "encoder":
            tensors[entry.hf] = np.ascontiguousarray(
                value.T if entry.hf_transpose else value, dtype=np.float32)
    tensors[HF_WEIGHT] = np.ascontiguousarray(head.output_weights)
    tensors[HF_BIAS] = np.ascontiguousarray(head.output_bias)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, huggingface.WEIGHTS_NAME)
    save_file(tensors, path, metadata={"format": "pt"})
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_config(bundle, head), f, indent=2, sort_keys=True)
        f.write("\n")
    huggingface.write_vocabulary(directory, bundle)
    logging.info("Wrote %d tensors (%s, %d %s labels) to %s.", len(tensors), ARCHITECTURE,
                 head.num_labels, head.task, path)
    return path


def task_from_config(data: dict, where: str) -> str:
    """Our task name from a `config.json`'s `problem_type`; without one, as
    `transformers` decides: one label is regression, more are single label."""
    problem = data.get("problem_type")
    if problem is None:
        return "regression" if int(data.get("num_labels", len(data.get(
            "id2label") or {0: 0, 1: 1}))) == 1 else "single_label"
    for task, name in PROBLEM_TYPES.items():
        if name == problem:
            return task
    raise ValueError(f"{where}: problem_type must be one of {list(PROBLEM_TYPES.values())}. "
                     f"Received: problem_type={problem!r}")


def labels_from_config(data: dict, num_labels: int, where: str) -> list:
    """The label names in id order from `id2label`; `LABEL_i` where it has none."""
    id2label = data.get("id2label") or {}
    try:
        names = {int(i): str(name) for i, name in id2label.items()}
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"{where}: id2label must map ids (\"0\", \"1\", ...) to names. "
                         f"Received: {id2label!r}"[:300]) from None
    if names and sorted(names) != list(range(num_labels)):
        raise ValueError(f"{where}: id2label must have ids 0..{num_labels - 1} for the "
                         f"{num_labels} rows of {HF_WEIGHT}. Received ids: {sorted(names)}")
    return [names.get(i, f"LABEL_{i}") for i in range(num_labels)]


def read(directory: str, vocab_path: str = "") -> tuple:
    """Reads a `BertForSequenceClassification` directory.

    Returns:
        `(Bundle, ClassifierHead)`: the encoder (pooler included) and the head
        with the labels and task of its `config.json`.
    """
    bundle = huggingface.read(directory, heads="encoder", vocab_path=vocab_path)
    tensors, where = huggingface.load_tensors(directory)
    if HF_WEIGHT not in tensors or HF_BIAS not in tensors:
        raise ValueError(f"{where} has no {HF_WEIGHT}/{HF_BIAS}: not a "
                         f"{ARCHITECTURE}. Read it as an encoder (--input_format=hf).")
    return bundle, _hf_head(directory, tensors)


def _hf_head(directory: str, tensors: dict) -> ClassifierHead:
    """The head of a `BertForSequenceClassification` directory from its
    `classifier.*` tensors and the labels and task of its `config.json`."""
    config_path = os.path.join(directory, "config.json")
    from pretraining.formats.bundle import read_json
    data = read_json(config_path)
    weights = np.asarray(tensors[HF_WEIGHT], np.float32)
    head = ClassifierHead(task_from_config(data, config_path),
                          labels_from_config(data, weights.shape[0], config_path),
                          weights, np.asarray(tensors[HF_BIAS], np.float32))
    return head


def read_head(path: str, input_format: str) -> ClassifierHead | None:
    """The classifier of a Hugging Face `BertForSequenceClassification`
    directory or a Google `run_classifier.py` checkpoint, or None when the
    input has none. Google's labels and task come from a `labels.json` beside
    the checkpoint (as our export writes it), else `LABEL_i` (one output:
    regression)."""
    if input_format == "hf":
        if not os.path.isdir(path):
            return None
        tensors, _ = huggingface.load_tensors(path)
        if HF_WEIGHT not in tensors or HF_BIAS not in tensors:
            return None
        return _hf_head(path, tensors)
    if input_format != "google":
        return None
    found = read_google_head(path)
    if found is None:
        return None
    weights, bias = found
    from pretraining.formats import google
    from pretraining.formats.bundle import read_json
    spec = os.path.join(os.path.dirname(google.find_prefix(path)), LABELS_FILE)
    data = read_json(spec) if os.path.isfile(spec) else {}
    task = data.get("task") or ("regression" if len(bias) == 1 else "single_label")
    labels = list(data.get("labels") or []) or [f"LABEL_{i}" for i in range(len(bias))]
    if task == "regression":
        labels = labels[:1] if len(labels) == 1 else ["LABEL_0"]
    return ClassifierHead(task, labels, weights, bias)


def write_with_head(output: str, output_format: str, bundle: Bundle,
                    head: ClassifierHead) -> str:
    """Writes encoder + classifier: `hf` → `BertForSequenceClassification`;
    `google` → `bert_model.ckpt` with `output_weights`/`output_bias` and a
    `labels.json` (`{"task", "labels"}`; regression: no labels) beside it."""
    check_holdable(bundle.config, output_format)
    if output_format == "hf":
        return write(output, bundle, head)
    if output_format != "google":
        raise ValueError(f"A classifier is written as hf or google. Received: "
                         f"output_format={output_format!r}")
    from pretraining.formats import google
    written = google.write(output, bundle, {GOOGLE_WEIGHT: head.output_weights,
                                            GOOGLE_BIAS: head.output_bias})
    labels = [] if head.task == "regression" else list(head.labels)
    with open(os.path.join(output, LABELS_FILE), "w", encoding="utf-8") as f:
        json.dump({"task": head.task, "labels": labels}, f, indent=2)
        f.write("\n")
    return written


def read_google_head(path: str) -> tuple | None:
    """Google's `output_weights` `(num_labels, hidden)` and `output_bias` from a
    `run_classifier.py` checkpoint (prefix, `.index` file or directory), or
    None when it has no classifier."""
    import tensorflow as tf
    from pretraining.formats import google
    reader = tf.train.load_checkpoint(google.find_prefix(path))
    names = reader.get_variable_to_shape_map()
    if GOOGLE_WEIGHT not in names or GOOGLE_BIAS not in names:
        return None
    return (np.asarray(reader.get_tensor(GOOGLE_WEIGHT), np.float32),
            np.asarray(reader.get_tensor(GOOGLE_BIAS), np.float32))
