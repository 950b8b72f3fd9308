"""Running sums of a logging window and the ETA of a run."""

import time


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Window:
    """Sums of the per-step loss terms since the last log line."""

    def __init__(self):
        self.sums = {"loss_sum": 0.0, "correct": 0.0, "weight": 0.0, "grad_norm": 0.0}
        self.steps = 0
        self.start = time.time()

    def add(self, totals: dict, steps: int):
        for key in self.sums:
            self.sums[key] += totals[key]
        self.steps += steps

    def record(self, step: int, learning_rate: float, *, global_batch_size: int,
               seq_length: int, flops_per_step: float, peak_flops: float = 0.0) -> dict:
        """The window's figures; `mfu` only when the peak FLOP/s is known."""
        weight = max(self.sums["weight"], 1.0)
        steps_per_second = self.steps / max(time.time() - self.start, 1e-9)
        record = {"step": step, "loss": self.sums["loss_sum"] / weight,
                  "masked_lm_accuracy": self.sums["correct"] / weight,
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
