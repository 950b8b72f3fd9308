"""SIGTERM handling: what a preemptible VM or a job scheduler sends.

A Python signal handler runs only between `tf.function` calls, so the loop
checks the flag after each `steps_per_loop` chunk and between eval batches
(the final evaluation included), saves a checkpoint and raises `Preempted`;
the CLI turns it into exit status `EXIT_PREEMPTED`. Keep a chunk shorter than
the grace period the platform gives. Under
MultiWorkerMirroredStrategy the workers agree (a one-number all-reduce per
chunk) so a SIGTERM on any one of them stops them all at the same step.
"""

import signal
import threading

from absl import logging

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again" — rerun the same command to resume.


class Preempted(Exception):
    """Raised after the checkpoint that follows a SIGTERM has been written."""


class SigtermFlag:
    """Context manager: while active, SIGTERM sets `received` instead of killing."""

    def __init__(self):
        self.received = False
        self._previous = None

    def _handler(self, signum, frame):
        del frame
        if not self.received:
            logging.warning("Signal %d received: checkpointing at the next step or "
                            "eval-batch boundary.", signum)
        self.received = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


def stop(checkpoint, step: int):
    """After a SIGTERM: a checkpoint at `step` (unless the newest is one),
    then `Preempted` (exit 75).

    Args:
        checkpoint: `checkpoints.RunCheckpoint`. The run's checkpoints.
            Required.
        step: int. The step the run stands at. Required.
    """
    latest = checkpoint.latest
    if not latest or not latest.endswith(f"ckpt-{step}"):
        checkpoint.save(step)
    raise Preempted(f"SIGTERM received: checkpoint saved at step {step} in "
                    f"{checkpoint.directory}; run the same command to resume.")
