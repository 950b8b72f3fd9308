#!/usr/bin/env python
"""The data build on Apache Beam vs the local builder, and the local
builder's memory against corpus size (issue 24).

Items, each in its own process, every round in turn (seq 128, P 20, static
whole-word masking, no NSP, dupe_factor 1, 8 shards; timed from the build
call to its return, imports excluded):
  base_w2     the previous builder (seeded shuffle buffer), from the
              worktree --base (e.g. `git worktree add /tmp/base HEAD~N`),
              2 workers, 20 MB
  local_w2    this builder (hash-keyed shards, spill files), 2 workers, 20 MB
  direct_w2   the same build on Beam's DirectRunner, multi_processing mode,
              2 workers (--beam_python: a venv with apache-beam), 20 MB
  local_w2_80 this builder, 2 workers, 80 MB (peak memory must stay flat)
Peak memory is the process tree's (RSS summed, and PSS), sampled from /proc
as in bench/data_build.py. Corpus: bench/data_build.py's shuffled copies of a
distinct text, here the built-in sample alone (pydoc topics + stdlib
docstrings; data_build's site-packages walk takes minutes on a loaded
machine), with a SentencePiece model of --vocab_size 8,000 pieces.

  python -m bench.beam_build --rounds 3           # or: make bench SUITE=beam
Prints a table of medians [min-max], the same-round ratios, and one
'RESULT {json}' line.
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEQ, PREDICTIONS, SHARDS = 128, 20, 8


def side(args):
    """One build, in this process (the code from --code)."""
    sys.path.insert(0, args.code)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import shutil
    import tempfile
    from bench import data_build  # helpers only: imports no data_pipeline
    from data_pipeline import builder, tasks
    assert os.path.dirname(os.path.dirname(builder.__file__)) == os.path.abspath(args.code)
    task = tasks.TaskConfig(task="mlm", masking="static", max_seq_length=SEQ,
                            max_predictions_per_seq=PREDICTIONS)
    extra = {}
    if args.runner:
        extra = dict(runner=args.runner, beam_options=(
            f"--direct_num_workers={args.workers}",
            "--direct_running_mode=multi_processing"))
    out = tempfile.mkdtemp(prefix="bench_beam_build_", dir=args.workdir)
    try:
        memory = data_build.PeakMemory()
        memory.start()
        cpu, start = data_build._cpu_seconds(), time.perf_counter()  # noqa: SLF001
        manifests = builder.build(
            args.corpus, args.spm, os.path.join(out, "data"), task=task,
            num_workers=args.workers, seed=12345, num_shards=SHARDS, **extra)
        seconds = time.perf_counter() - start
        cpu = data_build._cpu_seconds() - cpu  # noqa: SLF001
        peak = memory.stop()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    data_build._report(args.tag, manifests["train"].num_examples, seconds,  # noqa: SLF001
                       cpu, peak, dict(workers=args.workers, runner=args.runner or "local",
                                       corpus_mb=round(os.path.getsize(args.corpus) / 1e6, 2)))


def _items(args, data):
    def item(tag, python, code, corpus, runner=None):
        cmd = [python, os.path.join(HERE, "beam_build.py"), "--side", "--tag", tag,
               "--code", code, "--workdir", args.workdir, "--workers", "2",
               "--corpus", data[corpus]["path"], "--spm", data["spm"]]
        return cmd + (["--runner", runner] if runner else [])

    items = {"base_w2": item("base_w2", args.python, args.base, "20"),
             "local_w2": item("local_w2", args.python, ROOT, "20"),
             "direct_w2": item("direct_w2", args.beam_python, ROOT, "20",
                               "DirectRunner"),
             "local_w2_80": item("local_w2_80", args.python, ROOT, "80")}
    if not os.path.isdir(os.path.join(args.base, "data_pipeline")):
        print(f"--base={args.base} is not a worktree: skipping base_w2", flush=True)
        del items["base_w2"]
    if not os.path.exists(args.beam_python):
        print(f"{args.beam_python} missing (make test-beam makes .venv-beam): "
              "skipping direct_w2", flush=True)
        del items["direct_w2"]
    if args.only:
        items = {k: v for k, v in items.items() if k in args.only.split(",")}
    return items


def table(recs, names, args):
    rows = {}
    for name in names:
        rs = [r for r in recs if r["item"] == name and "inst_per_s" in r]
        if rs:
            v = [r["inst_per_s"] for r in rs]
            rows[name] = dict(values=v, median=statistics.median(v), min=min(v), max=max(v),
                              rss=max(r["tree_peak_rss_mib"] for r in rs),
                              pss=max(r["tree_peak_pss_mib"] for r in rs),
                              per_cpu=statistics.median(r["inst_per_cpu_s"] for r in rs),
                              instances=rs[0]["instances"], mb=rs[0]["corpus_mb"],
                              load=[r["load1_before"] for r in rs])
    print(f"\n## data build, local vs Beam: median of {args.rounds} rounds [min-max], "
          f"{time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} CPUs, "
          f"uptime load {os.getloadavg()[0]:.2f}")
    print("| item | corpus MB | instances | instances/s | instances per CPU-s | tree peak PSS / RSS MiB | load before |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['mb']} | {r['instances']} | {r['median']:.0f} "
              f"[{r['min']:.0f}-{r['max']:.0f}] | {r['per_cpu']:.0f} | {r['pss']:.0f} / {r['rss']:.0f} | "
              f"{min(r['load']):.1f}-{max(r['load']):.1f} |")
    result = {}
    for a, b in (("local_w2", "base_w2"), ("direct_w2", "local_w2")):
        if a in rows and b in rows:
            per_round = [x / y for x, y in zip(rows[a]["values"], rows[b]["values"])]
            result[f"{a}_vs_{b}"] = statistics.median(per_round)
            print(f"{a} / {b} instances/s, same round: "
                  + ", ".join(f"{x:.2f}" for x in per_round)
                  + f": median {result[f'{a}_vs_{b}']:.2f}x")
    if "local_w2" in rows and "local_w2_80" in rows:
        result.update(pss_20=rows["local_w2"]["pss"], pss_80=rows["local_w2_80"]["pss"])
        print(f"local builder peak PSS: {rows['local_w2']['pss']:.0f} MiB at "
              f"{rows['local_w2']['mb']} MB, {rows['local_w2_80']['pss']:.0f} MiB at "
              f"{rows['local_w2_80']['mb']} MB")
    result.update({f"{k}_inst_per_s": r["median"] for k, r in rows.items()})
    result.update({f"{k}_inst_per_cpu_s": r["per_cpu"] for k, r in rows.items()})
    print("RESULT " + json.dumps(result), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", action="store_true", help="(internal) one item")
    ap.add_argument("--tag")
    ap.add_argument("--code", default=ROOT, help="(internal) tree to import")
    ap.add_argument("--workdir", default="/tmp/bench_beam_build")
    ap.add_argument("--vocab_size", type=int, default=8000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated item names")
    ap.add_argument("--python", default=sys.executable, help="our venv's python")
    ap.add_argument("--beam_python", default=os.path.join(ROOT, ".venv-beam/bin/python"))
    ap.add_argument("--base", default="/tmp/base", help="worktree of the previous builder")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--corpus")
    ap.add_argument("--spm")
    ap.add_argument("--runner")
    ap.add_argument("--out", default="/tmp/bench_beam.jsonl")
    args = ap.parse_args(argv)
    if args.side:
        return side(args)
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(HERE, "peers"))
    import run_peers  # noqa: E402
    from bench import data_build
    from data_pipeline import corpus, sample_corpus
    os.makedirs(args.workdir, exist_ok=True)
    distinct = os.path.join(args.workdir, "distinct.txt")
    if not os.path.exists(distinct):  # data_build.prepare takes it as is
        corpus.write_documents(sample_corpus.sample_documents(), distinct)
    data = {"spm": None}
    for mb in (20, 80):
        prepared = data_build.prepare(args.workdir, mb, args.vocab_size)
        data[str(mb)] = prepared["full"]
        data["spm"] = prepared["spm"]
    items = _items(args, data)
    recs = run_peers.run_rounds(
        items, args.rounds, args.out,
        lambda rec: (f"load={rec['load1_before']:.2f} inst/s={rec.get('inst_per_s', 0):.0f} "
                     f"tree PSS={rec.get('tree_peak_pss_mib')}MiB"))
    table(recs, list(items), args)


if __name__ == "__main__":
    main()
