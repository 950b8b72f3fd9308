"""What the loop says while it works: the sums of a logging window, the
chunk of steps each compiled call runs, the time the first (compiling) call
took, the ETA of a run and the progress of an evaluation."""

import collections
import math
import time

from absl import logging

from data_pipeline import input as data_input


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


def next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def chunk(step: int, end: int, train, first: bool) -> int:
    """Steps the next compiled call runs: up to the next end, loop, checkpoint,
    log or eval boundary; 1 for a process's `first` call (it compiles, and a
    fresh run logs its first step). The chunks change no number."""
    log_every = train.log_every or train.steps_per_loop
    boundaries = [end, next_multiple(step, train.steps_per_loop),
                  next_multiple(step, train.checkpoint_every), next_multiple(step, log_every)]
    if train.eval_every:
        boundaries.append(next_multiple(step, train.eval_every))
    if first:
        boundaries.append(step + 1)
    return min(boundaries) - step


def log_first_call(fn, what: str):
    """`fn` that logs "compiling `what` (first call)…" before its first call and
    the seconds that call took (tracing and compiling included) after it; other
    attributes are `fn`'s (a `tf.function`'s tracing count, say)."""
    return _FirstCallLogger(fn, what)


class _FirstCallLogger:
    def __init__(self, fn, what: str):
        self._fn, self._what, self._called = fn, what, False

    def __call__(self, *args, **kwargs):
        if self._called:
            return self._fn(*args, **kwargs)
        logging.info("Compiling the %s (first call)…", self._what)
        start = time.time()
        result = self._fn(*args, **kwargs)
        self._called = True
        logging.info("Compiled the %s: the first call took %.1f s.", self._what,
                     time.time() - start)
        return result

    def __getattr__(self, name):
        return getattr(self._fn, name)


class Window:
    """Sums of the per-step loss terms since the last log line."""

    def __init__(self):
        self.sums = collections.defaultdict(float)
        self.steps = 0
        self.timed_steps = 0  # The steps the clock covers.
        self.start = time.time()

    def add(self, totals: dict, steps: int, timed: bool = True):
        """Adds `steps` steps' sums; `timed=False` (a compiling call) keeps
        them out of the speed figures: the clock restarts after them."""
        for key, value in totals.items():
            self.sums[key] += value
        self.steps += steps
        if timed:
            self.timed_steps += steps
        else:
            self.start = time.time()

    def record(self, step: int, learning_rate: float, *, task: str, global_batch_size: int,
               seq_length: int, flops_per_step: float, peak_flops: float = 0.0) -> dict:
        """The window's figures; `mfu` only when the peak FLOP/s is known; no
        speed figures for a window of untimed (compiling) steps only."""
        record = {"step": step, **metrics(self.sums, task),
                  "learning_rate": learning_rate,
                  "grad_norm": self.sums["grad_norm"] / max(self.steps, 1)}
        if not self.timed_steps:
            return record
        steps_per_second = self.timed_steps / max(time.time() - self.start, 1e-9)
        record.update({
            "examples_per_second": steps_per_second * global_batch_size,
            "tokens_per_second": steps_per_second * global_batch_size * seq_length,
            "tflops_per_second": steps_per_second * flops_per_step / 1e12})
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


def log_eval(step: int, result: dict) -> None:
    """The log line of an evaluation's (unprefixed) figures."""
    logging.info("Eval at step %d: %s (%d predictions)", step, format_metrics(result),
                 result["predictions"])


def log_train(record: dict, total_steps: int, eta: Eta) -> None:
    """The train log line of a `Window.record` (the speed only when timed)."""
    speed = ""
    if "examples_per_second" in record:
        speed = (f"  {record['examples_per_second']:.1f} examples/s  "
                 f"{record['tokens_per_second']:.0f} tokens/s  "
                 f"{record['tflops_per_second']:.3f} TFLOP/s"
                 + (f"  MFU {record['mfu']:.1%}" if "mfu" in record else "")
                 + f"  ETA {eta.format(record['step'])}")
    logging.info("step %d/%d  %s  lr %.3g  grad_norm %.3f%s", record["step"], total_steps,
                 format_metrics(record), record["learning_rate"], record["grad_norm"], speed)


def eval_batches(data_dir: str, global_batch_size: int, limit: int = 0) -> int:
    """Global batches one evaluation reads: the split's examples in batches
    (the last one padded), at most `limit` (0: no limit)."""
    total = -(-data_input.read_manifest(data_dir).num_examples // global_batch_size)
    return min(total, limit) if limit else total


class EvalProgress:
    """Logs an evaluation's batches done of `total` and its ETA: about every
    tenth of the way and at least every `every_seconds`."""

    def __init__(self, total: int, every_seconds: float = 30.0):
        self.total, self.every_seconds = total, every_seconds
        self.stride = max(1, -(-total // 10))
        self.start = self.last = time.time()

    def update(self, done: int) -> None:
        now = time.time()
        if done % self.stride and done != self.total and now - self.last < self.every_seconds:
            return
        self.last = now
        left = max(self.total - done, 0) * (now - self.start) / max(done, 1)
        logging.info("Eval: %d/%d batches (%.0f%%), ETA %s", done, self.total,
                     100.0 * done / max(self.total, 1), _format_seconds(left))
