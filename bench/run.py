#!/usr/bin/env python
"""The benchmark suite: our train step alternated with the peers, round by round.

Every round runs each item once, the order reversed every other round (A B C,
C B A, ...), each in its own process under /usr/bin/time -v (peak RSS), so a
noisy shared machine, or one whose speed drifts, hits all alike. Every item, peers included, runs with the CPU settings our command-line
tools set (`pretraining.cpu_env`: TF_ENABLE_ONEDNN_OPTS=1 and XLA:CPU's oneDNN
dots), unless the environment already sets them: KerasHub's XLA-compiled step
is ~2-4% faster with them than with TensorFlow's defaults. The table gives the
median over rounds [min-max] and each figure as a ratio to the fastest peer
*in this run*, then checks the issue-9 goals:

  S fp32: ours >= 1.3x the fastest peer's seq/s
  M fp32: ours >= 1.15x the fastest peer, and peak RSS <= the lowest peer's
  input pipeline: examples/s >= 10x what the train step consumes; issue 3:
    >= 50,000 dynamically masked examples per CPU-second (one core)
  data (issue 3): bench/data_build.py, the mlm build (1 and 2 workers) vs HF
    tokenizers + DataCollatorForLanguageModeling, with its own table and goals

  bf16: ours fp32 vs bf16 throughput (config S), then bench/bf16_curve.py: the
    two loss curves over 200 steps on the sample corpus, window by window
  quality (issue 25): bench/time_to_quality.py, held-out masked-LM accuracy
    against training time, ours vs HF on the same records (~30 min on 2
    cores; not in `all`); its own flags pass through (--steps, --shape, --plot...)

Suites: S (default), M, bf16, input, data, beam, quality, all.
Peers need their venvs: `bash bench/peers/setup.sh` (under /tmp/peers).

Examples:
  python -m bench.run                      # S, 3 rounds
  python -m bench.run --suite M --rounds 3
  python -m bench.run --suite S --only ours_jit1,kerashub_jit1 --rounds 2
  python -m bench.run --suite data --rounds 3
  python -m bench.run --suite beam --rounds 3    # local builder vs Beam DirectRunner
  python -m bench.run --suite quality --plot /tmp/ttq.png
  python -m bench.run --suite S --also 'ours_newdropout=.venv/bin/python -m bench.train_step --config S'
"""
import argparse
import importlib.util
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "peers"))
import run_peers  # noqa: E402


def load_cpu_env():
    """`pretraining/cpu_env.py` on its own: importing the `pretraining` package
    would load TensorFlow into this parent process."""
    spec = importlib.util.spec_from_file_location(
        "pretraining_cpu_env", os.path.join(ROOT, "pretraining", "cpu_env.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PEERS = os.environ.get("PEERS", "/tmp/peers")
PEER_PREFIXES = ("hf_", "kerashub_")
INPUT_GOAL_PER_CORE = 50_000


def items_for(suite, py, tp, fp, blocks):
    ours = lambda *a: [py, "-m", "bench.train_step", *a]  # noqa: E731
    hf = lambda *a: [tp, f"{HERE}/peers/mlm_step_hf.py", *a]  # noqa: E731
    kh = lambda *a: [fp, f"{HERE}/peers/mlm_step_kerashub.py", *a]  # noqa: E731
    b = str(blocks)
    if suite == "S":
        return {
            "ours_jit1": ours("--config", "S", "--jit", "1", "--warmup", "2", "--blocks", b),
            "kerashub_jit1": kh("--config", "S", "--jit", "1", "--warmup", "2", "--steps", "1", "--blocks", b),
            "ours_jit0": ours("--config", "S", "--jit", "0", "--warmup", "2", "--blocks", b),
            "kerashub_jit0": kh("--config", "S", "--jit", "0", "--warmup", "2", "--steps", "1", "--blocks", b),
            "hf_eager_gather": hf("--config", "S", "--mode", "eager", "--head", "gather", "--warmup", "2", "--steps", "1", "--blocks", b),
            "hf_eager_full": hf("--config", "S", "--mode", "eager", "--head", "full", "--warmup", "2", "--steps", "1", "--blocks", str(max(3, blocks // 2))),
        }
    if suite == "M":
        m = str(max(6, 3 * blocks // 4))  # ~3 s steps: 6 timed, not 3, for a steadier median
        return {
            "ours_jit1": ours("--config", "M", "--jit", "1", "--warmup", "1", "--blocks", m),
            "kerashub_jit1": kh("--config", "M", "--jit", "1", "--warmup", "1", "--steps", "1", "--blocks", m),
            "ours_jit0": ours("--config", "M", "--jit", "0", "--warmup", "1", "--blocks", m),
            "hf_eager_gather": hf("--config", "M", "--mode", "eager", "--head", "gather", "--warmup", "1", "--steps", "1", "--blocks", m),
        }
    if suite == "bf16":
        return {
            "ours_S_fp32_jit1": ours("--config", "S", "--jit", "1", "--blocks", b),
            "ours_S_bf16_jit1": ours("--config", "S", "--jit", "1", "--precision", "bf16", "--blocks", b),
            "ours_S_bf16_jit0": ours("--config", "S", "--jit", "0", "--precision", "bf16", "--blocks", b),
        }
    if suite == "input":
        inp = lambda *a: [py, "-m", "bench.input_pipeline", *a]  # noqa: E731
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        return {
            "input_static": inp("--masking", "static"),
            "input_dynamic": inp("--masking", "dynamic"),
            # One core (issue 3's goal): pinned to CPU 0, a one-thread tf.data pool.
            "input_dynamic_b32_1core": pin + inp("--masking", "dynamic", "--threads", "1"),
            "input_dynamic_b256_1core": pin + inp("--masking", "dynamic", "--batch", "256",
                                                  "--batches", "20", "--threads", "1"),
        }
    raise SystemExit(f"unknown suite {suite}")


def value(r):
    if "seq_per_s" in r:
        return r["seq_per_s"]["median"]
    if "examples_per_s" in r:
        return r["examples_per_s"]["median"]
    return None


def table(suite, recs, names):
    rows = {}
    for name in names:
        rs = [r for r in recs if r["item"] == name and value(r) is not None]
        if not rs:
            rows[name] = None
            continue
        v = [value(r) for r in rs]
        rss = [r.get("maxrss_mib_time_v") or r.get("peak_rss_mib") or 0 for r in rs]
        rows[name] = dict(median=statistics.median(v), min=min(v), max=max(v), n=len(v),
                          rss=max(rss), mfu=statistics.median(r.get("mfu", 0) or 0 for r in rs),
                          cpu=[r.get("cpu_pct") for r in rs],
                          load=[r.get("load1_before") for r in rs])
    peers = {k: v for k, v in rows.items() if k.startswith(PEER_PREFIXES) and v}
    best_peer = max(peers, key=lambda k: peers[k]["median"]) if peers else None
    unit = "examples/s" if suite == "input" else "seq/s"
    print(f"\n## suite {suite}: median of {max((r['n'] for r in rows.values() if r), default=0)} "
          f"rounds [min-max], {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} CPUs")
    print(f"| item | {unit} | vs fastest peer ({best_peer}) | MFU (own peak) | peak RSS MiB | "
          "CPU% | load before |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if r is None:
            print(f"| {name} | FAILED | | | | | |")
            continue
        ratio = f"{r['median'] / peers[best_peer]['median']:.2f}x" if best_peer else "-"
        mfu = f"{r['mfu']:.0%}" if r["mfu"] else "-"
        print(f"| {name} | {r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}] | {ratio} | {mfu} | "
              f"{r['rss']:.0f} | {min(c or 0 for c in r['cpu']):.0f}-{max(c or 0 for c in r['cpu']):.0f} | "
              f"{min(l or 0 for l in r['load']):.1f}-{max(l or 0 for l in r['load']):.1f} |")
    # goals
    goal = {"S": 1.3, "M": 1.15}.get(suite)
    if goal and best_peer:
        for name, r in rows.items():
            if not name.startswith("ours") or r is None:
                continue
            ratio = r["median"] / peers[best_peer]["median"]
            verdict = "met" if ratio >= goal else f"MISSED by {goal / ratio - 1:.0%} of our speed"
            print(f"goal {suite}: {name} {ratio:.2f}x vs {best_peer} (goal {goal}x): {verdict}")
            if suite == "M":
                low = min(p["rss"] for p in peers.values())
                print(f"goal M RSS: {name} {r['rss']:.0f} MiB vs lowest peer {low:.0f} MiB: "
                      + ("met" if r["rss"] <= low else f"MISSED by {r['rss'] / low - 1:.0%}"))
    if suite == "input":
        for name in names:
            if not name.endswith("_1core"):
                continue
            per_cpu = [r["examples_per_cpu_s"]["median"] for r in recs
                       if r["item"] == name and r.get("masking") == "dynamic"
                       and "examples_per_cpu_s" in r]
            if per_cpu:
                core = statistics.median(per_cpu)
                print(f"goal issue 3: {name} {core:,.0f} dynamically masked examples per "
                      f"CPU-second (goal >= {INPUT_GOAL_PER_CORE:,} on one core): "
                      + ("met" if core >= INPUT_GOAL_PER_CORE
                         else f"MISSED by {INPUT_GOAL_PER_CORE / core - 1:.0%}"))
    return rows


def run_child(cmd):
    """A benchmark with its own table and goals, in its own process."""
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="S",
                    choices=["S", "M", "bf16", "input", "data", "beam", "quality", "all"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=8,
                    help="timed steps per process (S; M times 3/4 as many, at least 6)")
    ap.add_argument("--only", default="", help="comma-separated item names to keep")
    ap.add_argument("--also", action="append", default=[], help="NAME=COMMAND, run each round")
    ap.add_argument("--python", default=sys.executable, help="our venv's python")
    ap.add_argument("--torch-py", default=f"{PEERS}/torch/bin/python")
    ap.add_argument("--tf-py", default=f"{PEERS}/kh/bin/python")
    ap.add_argument("--out", default="", help="jsonl of every RESULT (default /tmp/bench_<suite>.jsonl)")
    args, extra = ap.parse_known_args(argv)
    if extra and args.suite != "quality":
        ap.error(f"unrecognized arguments: {' '.join(extra)} (only --suite quality passes "
                 "flags on, to bench/time_to_quality.py)")
    os.chdir(ROOT)
    load_cpu_env().apply_defaults()  # inherited by every item, the peers' too
    if args.suite == "quality":  # Its own runner: records, both sides, three figures.
        run_child([args.python, "-m", "bench.time_to_quality",
                   *(["--only", args.only] if args.only else []), *extra])
        return
    suites = ["S", "M", "bf16", "input"] if args.suite == "all" else [args.suite]
    for suite in suites:
        if suite in ("data", "beam"):  # Own runners: corpus, tokenizers, goals.
            module = {"data": "bench.data_build", "beam": "bench.beam_build"}[suite]
            cmd = [args.python, "-m", module, "--rounds", str(args.rounds)]
            run_child(cmd + (["--only", args.only] if args.only else []))
            continue
        items = items_for(suite, args.python, args.torch_py, args.tf_py, args.blocks)
        if args.only:
            items = {k: v for k, v in items.items() if k in args.only.split(",")}
        for a in args.also:
            k, v = a.split("=", 1)
            items[k] = shlex.split(v)
        missing = [p for p in (args.torch_py, args.tf_py) if not os.path.exists(p)]
        if missing and any(k.startswith(PEER_PREFIXES) for k in items):
            print(f"peer venvs missing ({missing}): run `bash bench/peers/setup.sh`; "
                  "skipping their items", flush=True)
            items = {k: v for k, v in items.items()
                     if not (k.startswith("hf_") and args.torch_py in missing)
                     and not (k.startswith("kerashub_") and args.tf_py in missing)}
        out = args.out or f"/tmp/bench_{suite}.jsonl"
        def describe(rec):
            v = value(rec)
            return (f"load_before={rec['load1_before']:.2f} value={v if v is None else round(v, 2)} "
                    f"rss={rec['maxrss_mib_time_v']}MiB wall={rec['process_wall_s']}s "
                    f"cpu={rec['cpu_pct']}%")

        if items:
            recs = run_peers.run_rounds(items, args.rounds, out, describe)
            table(suite, recs, list(items))
            print(f"(every RESULT line in {out})")
        if suite == "bf16" and (not args.only or "bf16_curve" in args.only.split(",")):
            run_child([args.python, "-m", "bench.bf16_curve"])  # the loss curves


if __name__ == "__main__":
    main()
