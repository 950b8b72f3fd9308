"""Running sums of a logging window and the ETA of a run."""

import collections
import math
import time


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
