#!/usr/bin/env python
"""Where our train step's time goes: per-kernel timing of the XLA-compiled step.

Runs the same step as `bench/train_step.py` (the trainer's own `_train_loop`),
profiles `--steps` steps with the TensorFlow profiler while XLA:CPU emits one
trace event per executed kernel (`--xla_cpu_enable_xprof_traceme=true`), then
reads the trace (`*.xplane.pb`, parsed with the protobuf TensorFlow ships) and
prints each kernel's time per step, grouped:

  matmul         dots (oneDNN matmul calls carry TensorFlow's op name, MatMul.N)
  reduce-window  XLA:CPU's split reductions (row and column sums)
  argmax         variadic (value, index) reductions
  fusion         XLA's fused elementwise kernels (GELU, dropout, softmax,
                 the optimizer update, ...)
  other          copies, gathers, anything else

A matmul's event covers its whole run, both threads working inside it, so
the kernels' total is close to the step time; `busy` is the union of each
thread's event intervals.

Prints a table and, last, 'RESULT {json}'. Examples:
  python -m bench.profile_step --config S --steps 3
  python -m bench.profile_step --config S --top 40 --json /tmp/s_profile.json
"""
import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "peers"))
from pretraining import cpu_env  # noqa: E402

TRACEME_FLAG = "--xla_cpu_enable_xprof_traceme=true"


def category(name: str) -> str:
    """The group of one kernel, from its name in the trace."""
    if re.match(r"(MatMul|dot|einsum|Einsum)", name):
        return "matmul"
    if "reduce-window" in name:
        return "reduce-window"
    if "iota_reduce" in name or "ArgMax" in name:
        return "argmax"
    if "fusion" in name:
        return "fusion"
    return "other"


def read_events(logdir: str):
    """(thread name, event name, start ps, duration ps) of every host event in
    the newest trace under `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                   key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {i: m.name for i, m in plane.event_metadata.items()}
        for line in plane.lines:
            base = line.timestamp_ns * 1000
            for ev in line.events:
                yield line.name, names.get(ev.metadata_id, "?"), base + ev.offset_ps, ev.duration_ps


def busy_ps(intervals) -> int:
    """Length of the union of [start, start + duration) intervals."""
    total, end = 0, -1
    for start, dur in sorted(intervals):
        stop = start + dur
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def summarise(events, steps: int):
    """Per-kernel ms per step on XLA's worker threads, and each thread's busy time.

    The kernels are the leaf events on the intra-op (Eigen) threads; the
    runtime's own wrappers (names with '::') nest them and are skipped.
    """
    per_kernel = collections.Counter()
    count = collections.Counter()
    per_thread = collections.defaultdict(list)
    for thread, name, start, dur in events:
        if "Eigen" not in thread or "::" in name or name.startswith("end: "):
            continue
        per_kernel[name] += dur
        count[name] += 1
        per_thread[thread].append((start, dur))
    ms = {k: v / 1e9 / steps for k, v in per_kernel.items()}
    busy = {t: busy_ps(iv) / 1e9 / steps for t, iv in per_thread.items()}
    return ms, {k: v / steps for k, v in count.items()}, busy


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="S", choices=["S", "M"])
    ap.add_argument("--steps", type=int, default=3, help="profiled steps")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--json", default="", help="also write the per-kernel figures here")
    ap.add_argument("--dump_events", default="", help="write every (thread, name, dur_us) "
                    "event to this TSV, for a look at what the trace holds")
    args = ap.parse_args(argv)

    flags = os.environ.get("XLA_FLAGS", "")
    if TRACEME_FLAG not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + TRACEME_FLAG).strip()
    cpu_env.apply_defaults()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    from common import get_config
    from bench.train_step import build_trainer, write_records

    c = get_config(args.config, None)
    with tempfile.TemporaryDirectory(prefix="bench_profile_") as tmp:
        data_dir = write_records(os.path.join(tmp, "train"), c, max(128, 4 * c["batch"]))
        trainer = build_trainer(c, data_dir, os.path.join(tmp, "run"), "fp32", 1)
        loop = trainer._make_train_loop()
        iterator = iter(trainer._dataset(trainer.train_dir, training=True))

        def run(n):
            out = loop(iterator, tf.constant(n, tf.int32))
            return {k: float(v) for k, v in out.items()}

        for _ in range(args.warmup):
            run(1)
        t0 = time.perf_counter()
        run(args.steps)
        plain = (time.perf_counter() - t0) / args.steps
        logdir = os.path.join(tmp, "profile")
        tf.profiler.experimental.start(logdir)
        t0 = time.perf_counter()
        run(args.steps)
        wall = (time.perf_counter() - t0) / args.steps
        tf.profiler.experimental.stop()
        events = list(read_events(logdir))

    if args.dump_events:
        with open(args.dump_events, "w") as f:
            for thread, name, _, dur in events:
                f.write(f"{thread}\t{name}\t{dur / 1e6:.1f}\n")
    ms, calls, busy = summarise(events, args.steps)
    groups = collections.Counter()
    for name, v in ms.items():
        groups[category(name)] += v
    total = sum(ms.values())
    print(f"config {args.config}: step {plain * 1e3:.1f} ms unprofiled, {wall * 1e3:.1f} ms "
          f"profiled; kernels {total:.1f} thread-ms/step; busy per thread: "
          + ", ".join(f"{t}={b:.1f}" for t, b in sorted(busy.items(), key=lambda x: -x[1])[:4]))
    print(f"{'group':<14} {'thread-ms/step':>15} {'share':>7}")
    for g, v in groups.most_common():
        print(f"{g:<14} {v:>15.1f} {v / total:>7.1%}")
    print(f"\n{'kernel':<60} {'calls':>6} {'ms/step':>9} {'share':>7}")
    for name, v in sorted(ms.items(), key=lambda x: -x[1])[:args.top]:
        print(f"{name[:60]:<60} {calls[name]:>6.0f} {v:>9.2f} {v / total:>7.1%}")
    result = {"config": args.config, "step_ms": round(plain * 1e3, 1),
              "profiled_step_ms": round(wall * 1e3, 1), "kernel_thread_ms": round(total, 1),
              "groups": {g: round(v, 1) for g, v in groups.items()},
              "busy_ms_per_thread": {t: round(b, 1) for t, b in busy.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "kernels": {k: round(v, 3) for k, v in ms.items()}}, f, indent=1)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
