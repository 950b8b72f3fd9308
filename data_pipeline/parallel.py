"""Ordered, memory-bounded parallel map over work units.

Results come back in submission order whatever the number of workers, so a
build that merges them in that order writes the same bytes with 1 or N
workers. With N workers, N - 1 are forked processes and this process is the
N-th (between reading and writing, it takes a unit itself when the others
are busy). At most `4 * num_workers` units are in flight, so memory stays
bounded however long the input stream.

Workers are forked: the function (a closure holding the tokenizer) is
inherited, never pickled, so user callables (e.g. a Chinese segmenter) need
not be picklable. Arguments and results are pickled.

While the map runs, objects that existed before it are frozen out of the
garbage collector (`gc.freeze`): each full collection would otherwise walk
TensorFlow's whole heap (10-20% of a 1-worker build), and in a forked worker
also copy every page it touches (20% more worker CPU).
"""

import collections
import gc
import multiprocessing
from typing import Callable, Iterable, Iterator

_FUNCTION = None  # The function forked workers run (set before the fork).


def _call(args):
    return _FUNCTION(*args)


def ordered_map(function: Callable, items: Iterable[tuple],
                num_workers: int = 1) -> Iterator:
    """Yields `function(*item)` for each item, in order.

    Args:
        function: Callable. Applied to each item's arguments.
        items: Iterable[tuple]. Consumed lazily.
        num_workers: int. Processes; 1 runs in this process. Defaults to 1.

    Raises:
        ValueError: `num_workers` < 1.
    """
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"--num_workers must be an int >= 1. Received: "
                         f"num_workers={num_workers!r}")
    gc.freeze()
    try:
        if num_workers == 1:
            for item in items:
                yield function(*item)
            return
        yield from _pool_map(function, items, num_workers)
    finally:
        gc.unfreeze()


class _Done:
    """A result computed in this process, in the queue of pool results."""

    def __init__(self, value):
        self.value = value

    def ready(self):
        return True

    def get(self):
        return self.value


def _pool_map(function, items, num_workers):
    """`num_workers - 1` forked processes plus this one: this process reads,
    merges and writes, and takes the next unit itself whenever the others
    have `2 * (num_workers - 1)` units queued (so no core idles while this
    process is busy, and no third process competes for two cores)."""
    global _FUNCTION  # pylint: disable=global-statement
    _FUNCTION = function
    forked = num_workers - 1
    context = multiprocessing.get_context("fork")
    pool = context.Pool(forked)
    try:
        pending = collections.deque()
        for item in items:
            queued = sum(1 for p in pending if not p.ready())
            if queued >= 2 * forked:
                pending.append(_Done(function(*item)))
            else:
                pending.append(pool.apply_async(_call, (item,)))
            while pending and pending[0].ready():
                yield pending.popleft().get()
            if len(pending) >= 4 * num_workers:  # Bounds memory.
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
        pool.join()
    finally:
        pool.terminate()
        _FUNCTION = None
