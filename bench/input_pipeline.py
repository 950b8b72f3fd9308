#!/usr/bin/env python
"""Examples/s of our tf.data input path (`data_pipeline.input.make_dataset`).

Writes random-id masked-LM records (vocab 30522, seq 128, 19 predictions; the
layout bench/train_step.py trains on) to a temp dir, static or dynamic masking,
then iterates the *training* dataset exactly as the trainer builds it (file
shuffle, interleave, shuffle buffer, batch, parse, dynamic masking, prefetch)
and reads it as the trainer does (`next(iterator)` inside a tf.function loop),
timing blocks of batches.

Prints a table of the timed blocks, then one line 'RESULT {json}' in the
format of bench/peers/common.py's `report` (examples_per_s and seq_per_s are
the same number here). Each block is also timed in CPU seconds of the whole
process (all threads): examples per CPU-second is what one core delivers
whatever the machine's other load or steal, the figure issue 3's goal
(>= 50,000 dynamically masked examples/s on one core) is checked against.
--threads N gives tf.data a private threadpool of N threads (with `taskset -c
0`, --threads 1 measures one core in wall-clock time). With --consumer
SEQ_PER_S (the train step's rate) it also prints the ratio and the issue-9
goal (>= 10x).

Example: python -m bench.input_pipeline --masking dynamic --consumer 40
         taskset -c 0 python -m bench.input_pipeline --masking dynamic --threads 1
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "peers"))
from common import get_config, report  # noqa: E402

GOAL_PER_CORE = 50_000


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="S", choices=["S", "M"], help="seq/vocab shape")
    ap.add_argument("--masking", default="static", choices=["static", "dynamic"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--examples", type=int, default=8192, help="records written")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--batches", type=int, default=50, help="batches per timed block")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=50,
                    help="batches before timing (the shuffle buffer fills and "
                         "tf.data's autotuning settles)")
    ap.add_argument("--threads", type=int, default=0,
                    help="tf.data private threadpool size (0: TF's shared pool)")
    ap.add_argument("--consumer", type=float, default=0.0,
                    help="train-step seq/s to compare with (goal: >= 10x)")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from bench.train_step import write_records
    from data_pipeline import input as data_input

    c = get_config(args.config, args.batch)
    with tempfile.TemporaryDirectory(prefix="bench_input_") as tmp:
        t0 = time.perf_counter()
        data_dir = write_records(os.path.join(tmp, "train"), c, args.examples,
                                 masking=args.masking, num_shards=args.shards)
        write_s = time.perf_counter() - t0
        ds = data_input.make_dataset(data_dir, args.batch, training=True, seed=1)
        if args.threads:
            options = tf.data.Options()
            options.threading.private_threadpool_size = args.threads
            ds = ds.with_options(options)
        it = iter(ds)

        @tf.function
        def consume(iterator, num_batches):
            """Pulls batches inside a graph, as the trainer's loop does: no
            Python objects per batch, so no Python garbage collection in the
            figures (a Python `next()` loop spent ~20% of its time there)."""
            total = tf.constant(0, tf.int64)
            for _ in tf.range(num_batches):
                batch = next(iterator)
                total += tf.cast(batch["input_ids"][0, 0], tf.int64)
            return total

        t0 = time.perf_counter()
        consume(it, tf.constant(args.warmup)).numpy()
        warm_s = time.perf_counter() - t0
        blocks, cpu = [], []
        for _ in range(args.blocks):
            t0, c0 = time.perf_counter(), time.process_time()
            consume(it, tf.constant(args.batches)).numpy()
            blocks.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    n = args.batch * args.batches
    print(f"{'block':>5} {'seconds':>8} {'examples/s':>11} {'CPU s':>7} {'ex/CPU-s':>9}")
    for i, (s, c_s) in enumerate(zip(blocks, cpu)):
        print(f"{i:>5} {s:>8.3f} {n / s:>11.0f} {c_s:>7.3f} {n / c_s:>9.0f}")
    rates = sorted(n / s for s in blocks)
    per_cpu = sorted(n / c_s for c_s in cpu)
    median = statistics.median(rates)
    extra = dict(examples_per_s=dict(median=median, min=rates[0], max=rates[-1], n=len(rates)),
                 examples_per_cpu_s=dict(median=statistics.median(per_cpu), min=per_cpu[0],
                                         max=per_cpu[-1], n=len(per_cpu)),
                 masking=args.masking, batch=args.batch, threads=args.threads or None,
                 write_examples_per_s=round(args.examples / write_s, 1),
                 tensorflow=tf.__version__)
    if args.consumer:
        extra.update(consumer_seq_per_s=args.consumer, ratio=round(median / args.consumer, 1),
                     goal_met=median >= 10 * args.consumer)
        print(f"goal: input >= 10x the train step ({args.consumer:.1f} seq/s): "
              f"{median / args.consumer:.0f}x, {'met' if median >= 10 * args.consumer else 'missed'}",
              flush=True)
    if args.masking == "dynamic":
        core = statistics.median(per_cpu)
        print(f"goal (issue 3): >= {GOAL_PER_CORE:,} dynamically masked examples/s on one "
              f"core: {core:,.0f} per CPU-second, "
              + ("met" if core >= GOAL_PER_CORE else f"MISSED by {GOAL_PER_CORE / core - 1:.0%}"),
              flush=True)
    report(f"input_{args.masking}", c, warm_s, blocks, args.batches, extra)


if __name__ == "__main__":
    main()
