"""What a run writes beside its checkpoints: resolved config, metrics, summary.

- `config.json`: the resolved experiment, `data_manifest.json`: the train
  records' manifest, `versions.json`: library versions.
- `metrics.jsonl`: one JSON line per logged train window (survives resumes).
- `train/` and `eval/`: TensorBoard event files.
- `summary.json`: the final figures, written atomically.
"""

import json
import os
import platform

import keras
import tensorflow as tf


def write_json_atomic(path: str, data) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)


class MetricsLog:
    """Files and TensorBoard writers of one run directory."""

    def __init__(self, model_dir: str, enabled: bool = True):
        """`enabled=False` (non-chief workers) writes nothing but still reads."""
        self.model_dir = model_dir
        self.enabled = enabled
        self.metrics_path = os.path.join(model_dir, "metrics.jsonl")
        self._writers = {}

    def write_config(self, experiment, manifest) -> None:
        if not self.enabled:
            return
        write_json_atomic(os.path.join(self.model_dir, "config.json"), experiment.to_dict())
        write_json_atomic(os.path.join(self.model_dir, "data_manifest.json"),
                          json.loads(manifest.to_json()))
        write_json_atomic(os.path.join(self.model_dir, "versions.json"), {
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__})

    def scalars(self, split: str, step: int, values: dict) -> None:
        if not self.enabled:
            return
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(
                os.path.join(self.model_dir, split))
        with self._writers[split].as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, float(value))
        self._writers[split].flush()

    def train_record(self, record: dict) -> None:
        if not self.enabled:
            return
        with tf.io.gfile.GFile(self.metrics_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        self.scalars("train", record["step"], {k: v for k, v in record.items() if k != "step"})

    def records(self) -> list[dict]:
        if not tf.io.gfile.exists(self.metrics_path):
            return []
        with tf.io.gfile.GFile(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def last_train_record(self) -> dict:
        """The last window's loss and accuracy, and the mean examples/s of the run."""
        records = self.records()
        if not records:
            return {}
        last = records[-1]
        rates = [r["examples_per_second"] for r in records]
        keys = ("loss", "masked_lm_accuracy", "accuracy", "perplexity", "nsp_accuracy")
        return {**{k: last[k] for k in keys if k in last},
                "examples_per_second": sum(rates) / len(rates)}

    def write_summary(self, summary: dict) -> None:
        if not self.enabled:
            return
        write_json_atomic(os.path.join(self.model_dir, "summary.json"), summary)
