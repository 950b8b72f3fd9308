"""Running sums of a logging window and the ETA of a run."""

import collections
import math
import time

from absl import logging


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def metrics(sums: dict, task: str) -> dict:
    """Loss, accuracy, perplexity (and NSP figures) from summed terms. The
    accuracy is `masked_lm_accuracy` for `mlm`, `accuracy` (next token) else."""
    weight = max(sums["weight"], 1.0)
    loss = sums["loss_sum"] / weight
    accuracy_key = "masked_lm_accuracy" if task == "mlm" else "accuracy"
    result = {"loss": loss, accuracy_key: sums["correct"] / weight,
              "perplexity": math.exp(min(loss, 50.0))}
    if "nsp_count" in sums:
        count = max(sums["nsp_count"], 1.0)
        result["nsp_loss"] = sums["nsp_loss_sum"] / count
        result["nsp_accuracy"] = sums["nsp_correct"] / count
    return result


class Window:
    """Sums of the per-step loss terms since the last log line."""

    def __init__(self):
        self.sums = collections.defaultdict(float)
        self.steps = 0
        self.start = time.time()

    def add(self, totals: dict, steps: int):
        for key, value in totals.items():
            self.sums[key] += value
        self.steps += steps

    def record(self, step: int, learning_rate: float, *, task: str, global_batch_size: int,
               seq_length: int, flops_per_step: float, peak_flops: float = 0.0) -> dict:
        """The window's figures; `mfu` only when the peak FLOP/s is known."""
        steps_per_second = self.steps / max(time.time() - self.start, 1e-9)
        record = {"step": step, **metrics(self.sums, task),
                  "learning_rate": learning_rate,
                  "grad_norm": self.sums["grad_norm"] / max(self.steps, 1),
                  "examples_per_second": steps_per_second * global_batch_size,
                  "tokens_per_second": steps_per_second * global_batch_size * seq_length,
                  "tflops_per_second": steps_per_second * flops_per_step / 1e12}
        if peak_flops:
            record["mfu"] = steps_per_second * flops_per_step / peak_flops
        return record


class Eta:
    """Time left, from the average step time of this process so far."""

    def __init__(self, start_step: int, total_steps: int):
        self.start_step, self.total_steps = start_step, total_steps
        self.start = time.time()

    def format(self, step: int) -> str:
        done = max(step - self.start_step, 1)
        return _format_seconds((self.total_steps - step) * (time.time() - self.start) / done)


def format_metrics(record: dict) -> str:
    """`loss 2.1000  masked_lm_accuracy 0.4000 …`: the figures a record has."""
    names = ("loss", "masked_lm_accuracy", "accuracy", "perplexity", "nsp_accuracy")
    return "  ".join(f"{name} {record[name]:.4f}" for name in names if name in record)


def log_train(record: dict, total_steps: int, eta: Eta) -> None:
    """The train log line of a `Window.record`."""
    logging.info("step %d/%d  %s  lr %.3g  grad_norm %.3f  %.1f examples/s  %.0f tokens/s  "
                 "%.3f TFLOP/s%s  ETA %s", record["step"], total_steps, format_metrics(record),
                 record["learning_rate"], record["grad_norm"], record["examples_per_second"],
                 record["tokens_per_second"], record["tflops_per_second"],
                 f"  MFU {record['mfu']:.1%}" if "mfu" in record else "",
                 eta.format(record["step"]))
