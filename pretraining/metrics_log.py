"""What a run writes beside its checkpoints: resolved config, metrics, summary.

- `config.json`: the resolved experiment (earlier ones in `config_history/`),
  `data_manifest.json`: the train records' manifest, `versions.json`: library
  versions.
- `metrics.jsonl`: one JSON line per logged train window, and one per
  evaluation (its keys prefixed `eval_`, as in `summary.json`), each with its
  `step` (survives resumes).
- `train/` and `eval/`: TensorBoard event files. Scalars are tagged
  `train/<name>` and `eval/<name>` (two charts, not one overlaid `loss`) and
  written as plain scalar values, so `EventAccumulator(...).Scalars(tag)`
  reads them and `python -m pretraining.plot RUN` draws them. `train/` also
  holds the resolved experiment (text `experiment` and TensorBoard's HParams).
- `summary.json`: the final figures, written atomically.
"""

import collections
import json
import os
import platform
import re

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from pretraining import run_config


def write_failed(path: str, error: Exception) -> ValueError:
    """The one-line error for a write to `path` that failed (a full disk, say)."""
    text = (getattr(error, "message", None) or str(error)).strip().splitlines()
    return ValueError(f"Writing {path} failed: {text[0] if text else type(error).__name__}. "
                      "Free space (or fix the directory) and run the same command to resume.")


def first_line(error: Exception) -> str:
    text = (getattr(error, "message", None) or str(error)).strip().splitlines()
    return text[0] if text else type(error).__name__


def write_json_atomic(path: str, data) -> None:
    tmp = path + ".tmp"
    try:
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except (OSError, tf.errors.OpError) as e:
        try:
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
        except (OSError, tf.errors.OpError):
            pass
        raise write_failed(path, e) from None


class MetricsLog:
    """Files and TensorBoard writers of one run directory."""

    def __init__(self, model_dir: str, enabled: bool = True):
        """`enabled=False` (non-chief workers) writes nothing but still reads."""
        self.model_dir = model_dir
        self.enabled = enabled
        self.metrics_path = os.path.join(model_dir, "metrics.jsonl")
        self._writers = {}
        self.histogram_every = 0  # train.histogram_every, set by write_config
        self._histogram_mark = -1  # step // histogram_every of the last histograms
        self._snapshot = None  # {path: weights} at the last histograms

    def write_config(self, experiment, manifest, step: int = 0) -> None:
        """Writes the run's files; a `config.json` that differs is kept first
        as `config_history/config-step-<step>.json` (`run_config.keep_history`)."""
        if not self.enabled:
            return
        run_config.keep_history(self.model_dir, experiment.to_dict(), step)
        write_json_atomic(os.path.join(self.model_dir, "config.json"), experiment.to_dict())
        write_json_atomic(os.path.join(self.model_dir, "data_manifest.json"),
                          json.loads(manifest.to_json()))
        write_json_atomic(os.path.join(self.model_dir, "versions.json"), {
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__})
        self.experiment_summary(experiment, step)
        self.histogram_every = experiment.train.histogram_every

    def _writer(self, split: str):
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(
                os.path.join(self.model_dir, split))
        return self._writers[split]

    def scalars(self, split: str, step: int, values: dict) -> None:
        """`values` at `step` under the tags `<split>/<name>`, as simple
        (float) values: `EventAccumulator.Scalars` reads them, as TensorBoard."""
        if not self.enabled:
            return
        summary = tf.compat.v1.Summary(value=[
            tf.compat.v1.Summary.Value(tag=f"{split}/{name}", simple_value=float(value))
            for name, value in values.items()])
        with self._writer(split).as_default(step=step):
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
        self._flush(split)

    def text(self, split: str, step: int, name: str, markdown: str) -> None:
        """A text summary `<split>/<name>` at `step` (TensorBoard's Text tab)."""
        if not self.enabled:
            return
        with self._writer(split).as_default(step=step):
            tf.summary.text(f"{split}/{name}", markdown)
        self._flush(split)

    def experiment_summary(self, experiment, step: int = 0) -> None:
        """The resolved experiment in TensorBoard (`train/`) at `step`: its JSON
        as the text `experiment` and its fields (`section.field`) as HParams."""
        if not self.enabled:
            return
        config = experiment.to_dict()
        flat = {f"{section}.{key}": value for section, fields in config.items()
                if isinstance(fields, dict) for key, value in fields.items()}
        flat.update({k: v for k, v in config.items() if not isinstance(v, dict)})
        hparams = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
                   for k, v in flat.items() if v is not None}
        with self._writer("train").as_default(step=step):
            tf.summary.text("experiment", "```\n" + json.dumps(config, indent=2) + "\n```")
            try:
                from tensorboard.plugins.hparams import api as hparams_api
                hparams_api.hparams(hparams)
            except ImportError:  # (tensorboard comes with TensorFlow's wheels)
                pass
        self._flush("train")

    def _flush(self, split: str) -> None:
        """Flushes a TensorBoard writer; a full disk is one-line `write_failed`."""
        try:
            self._writers[split].flush()
        except (OSError, tf.errors.OpError) as e:
            raise write_failed(os.path.join(self.model_dir, split), e) from None

    def close(self) -> None:
        """Closes the TensorBoard writers (reopened if more is logged); a
        failure (a full disk) is a warning: close runs on the way out of an
        error already reported."""
        for split, writer in self._writers.items():
            try:
                writer.close()
            except (OSError, tf.errors.OpError) as e:
                logging.warning("Closing the TensorBoard events in %s failed: %s",
                                os.path.join(self.model_dir, split), first_line(e))
        self._writers = {}

    def train_record(self, record: dict, variables=None) -> None:
        """A train window: `metrics.jsonl`, the `train/` scalars and, with
        `train.histogram_every`, the histograms of `variables`."""
        if not self.enabled:
            return
        self._append(record)
        self.scalars("train", record["step"], {k: v for k, v in record.items() if k != "step"})
        every = self.histogram_every
        if variables is not None and every and record["step"] // every > self._histogram_mark:
            self._histogram_mark = record["step"] // every
            self.histograms(record["step"], variables)

    def histograms(self, step: int, variables) -> None:
        """`weights/<path>` of each variable and `update_ratio/<layer>`: the
        change of each of the layer's variables since the previous histograms
        relative to its size, |w - w_before| / |w| (none the first time)."""
        values = {v.path: np.asarray(v.numpy(), np.float32) for v in variables}
        with self._writer("train").as_default(step=step):
            for path, weights in values.items():
                tf.summary.histogram(f"weights/{path}", weights)
            ratios = collections.defaultdict(list)
            for path, weights in values.items():
                if self._snapshot is not None and path in self._snapshot:
                    ratios[_layer(path)].append(float(
                        np.linalg.norm(weights - self._snapshot[path])
                        / max(np.linalg.norm(weights), 1e-12)))
            for layer, layer_ratios in ratios.items():
                tf.summary.histogram(f"update_ratio/{layer}", np.array(layer_ratios))
        self._flush("train")
        self._snapshot = values

    def eval_record(self, step: int, result: dict) -> None:
        """One evaluation: `metrics.jsonl` gets `{"step", "eval_<name>": ...}`,
        TensorBoard's `eval/` run the unprefixed scalars at `step`."""
        if not self.enabled or step in {r["step"] for r in self.eval_records()}:
            return  # (a finished run re-run: its last evaluation is written already)
        self._append({"step": step, **{f"eval_{k}": v for k, v in result.items()}})
        self.scalars("eval", step, result)

    def _append(self, record: dict) -> None:
        try:
            with tf.io.gfile.GFile(self.metrics_path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        except (OSError, tf.errors.OpError) as e:
            raise write_failed(self.metrics_path, e) from None

    def _read(self) -> tuple[list[dict], str | None]:
        """(the records, the cut final line or None). A kill or a full disk can
        leave the last line partial; a bad line before it is an error."""
        if not tf.io.gfile.exists(self.metrics_path):
            return [], None
        with tf.io.gfile.GFile(self.metrics_path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        lines = text.split("\n")
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                if number == len(lines):  # The last line, with no newline: cut short.
                    return records, line
                raise ValueError(f"{self.metrics_path} line {number} is not JSON ({e}): "
                                 "fix or remove that line.") from None
        return records, None

    def records(self) -> list[dict]:
        """The train windows' records (`eval_records` has the evaluations)."""
        return [r for r in self._all_records() if not _is_eval(r)]

    def eval_records(self) -> list[dict]:
        """The evaluations' records: `step` and `eval_`-prefixed figures."""
        return [r for r in self._all_records() if _is_eval(r)]

    def _all_records(self) -> list[dict]:
        records, cut = self._read()
        if cut is not None and not getattr(self, "_warned", False):
            self._warned = True
            logging.warning("%s: dropping its cut last line (%d bytes; a kill or a full "
                            "disk during a write).", self.metrics_path, len(cut))
        return records

    def drop_partial_line(self) -> None:
        """Removes a cut last line from `metrics.jsonl` (the next record would
        be appended to it), rewriting the file atomically."""
        if not self.enabled:
            return
        records, cut = self._read()
        if cut is None:
            return
        logging.warning("%s: dropping its cut last line (%d bytes; a kill or a full disk "
                        "during a write).", self.metrics_path, len(cut))
        tmp = self.metrics_path + ".tmp"
        try:
            with tf.io.gfile.GFile(tmp, "w") as f:
                f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            tf.io.gfile.rename(tmp, self.metrics_path, overwrite=True)
        except (OSError, tf.errors.OpError) as e:
            raise write_failed(self.metrics_path, e) from None

    def last_train_record(self) -> dict:
        """The last window's loss and accuracy, and the mean examples/s of the run."""
        records = self.records()
        if not records:
            return {}
        last = records[-1]
        # (a window of the compiling first step only has no speed)
        rates = [r["examples_per_second"] for r in records if "examples_per_second" in r]
        keys = ("loss", "masked_lm_accuracy", "accuracy", "perplexity", "nsp_accuracy")
        return {**{k: last[k] for k in keys if k in last},
                **({"examples_per_second": sum(rates) / len(rates)} if rates else {})}

    def write_summary(self, summary: dict) -> None:
        if not self.enabled:
            return
        write_json_atomic(os.path.join(self.model_dir, "summary.json"), summary)


def _layer(path: str) -> str:
    """`bert/layer_3` of `bert/layer_3/attention/query/kernel`; else the path
    less its variable name, at most two parts (`bert/embeddings`, `mlm`)."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if re.fullmatch(r"layer_\d+", part):
            return "/".join(parts[:i + 1])
    return "/".join(parts[:-1][:2]) or path


def _is_eval(record: dict) -> bool:
    return any(k.startswith("eval_") for k in record)
