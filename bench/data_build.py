#!/usr/bin/env python
"""Instances/s of the mlm data build (issue 3), alternated with Hugging Face.

Items, each in its own process under /usr/bin/time -v, every round in turn:
  ours_w1       builder.build, --num_workers 1 (the `python -m data_pipeline.build`
                library call): seq 128, P 20, static whole-word masking,
                short_seq_prob 0.1, dupe_factor 1, no NSP, shards written
  ours_w2       the same with --num_workers 2
  ours_w1_half  1 worker on the first half of the corpus (peak memory check)
  hf            HF `tokenizers` (WordPiece, same vocabulary size, trained on the
                same text) + group into 128-token blocks +
                DataCollatorForLanguageModeling(mlm_probability 0.15,
                return_tensors="np"), batches of 32, in memory (no writing)
  hf_wwm        the same with whole_word_mask=True (offsets, all [MASK])
Timed: from opening the corpus to the last record (tokenizer training and the
interpreter/TensorFlow import excluded on both sides). CPU seconds are the
build's own, workers included; peak memory is the process tree's, sampled
from /proc (RSS summed every 0.2 s; PSS, which counts the pages forked
workers share with the main process once, every 2 s).

Corpus (made once in --workdir): the built-in sample corpus plus the
docstrings of this venv's site-packages (real English text, ~9.6 MB distinct;
the sample alone allows only ~10.8k SentencePiece pieces), then copies of it
with the document order shuffled per copy (seeded) up to --mb MB. Vocabulary:
SentencePiece unigram of --vocab_size pieces trained on the distinct text.

  python -m bench.data_build                  # prepare, 2 rounds, table
  python -m bench.data_build --rounds 3 --only ours_w1,ours_w2
Prints a table of medians [min-max] and one 'RESULT {json}' line. The HF
items need the venv of `bash bench/peers/setup.sh hf-data`.
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.environ.get("PEERS", "/tmp/peers")
GOOGLE_PER_CORE = 1288.0  # Google create_pretraining_data.py, examples/s per core (peers harness)
GOALS = {"google_x": 5.0, "hf_x": 2.0, "scaling": 1.8}
SEQ, PREDICTIONS, BATCH = 128, 20, 32


# ---------------------------------------------------------------- measuring
def _tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total // 1024


def _pss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f
                              if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return total


class PeakMemory(threading.Thread):
    """Peak memory of this process tree: RSS summed over the processes
    (counts pages forked workers share with the main process in each) every
    `interval` s from /proc/PID/statm, and PSS (shared pages split) every
    `pss_every` samples from smaps_rollup, which costs ~15 ms of CPU per
    read of a TensorFlow process, hence the sparser sampling."""

    def __init__(self, interval=0.2, pss_every=10):
        super().__init__(daemon=True)
        self.interval, self.pss_every, self.rss, self.pss = interval, pss_every, 0, 0
        self._stop_event = threading.Event()

    def run(self):
        n = 0
        while not self._stop_event.is_set():
            pids = _tree(os.getpid())
            self.rss = max(self.rss, _rss_kib(pids))
            if n % self.pss_every == 0:
                self.pss = max(self.pss, _pss_kib(pids))
            n += 1
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
        self.pss = max(self.pss, _pss_kib(_tree(os.getpid())))
        return round(self.rss / 1024, 1), round(self.pss / 1024, 1)


def _cpu_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _report(tag, instances, seconds, cpu, memory, extra):
    rec = dict(tag=tag, instances=instances, build_s=round(seconds, 3),
               inst_per_s=instances / seconds, cpu_s=round(cpu, 2),
               inst_per_cpu_s=instances / max(cpu, 1e-9),
               tree_peak_rss_mib=memory[0], tree_peak_pss_mib=memory[1],
               load1=os.getloadavg()[0], **extra)
    print("RESULT " + json.dumps(rec), flush=True)


# ---------------------------------------------------------------- corpus
def prepare(workdir, mb, vocab_size):
    """Corpus files and SentencePiece model in `workdir` (made if missing)."""
    sys.path.insert(0, ROOT)
    import numpy as np
    from data_pipeline import corpus, sample_corpus, sources, tokenization
    os.makedirs(workdir, exist_ok=True)
    distinct = os.path.join(workdir, "distinct.txt")
    if not os.path.exists(distinct):
        print("making the distinct text (site-packages docstrings: ~1 min)",
              flush=True)
        import sysconfig
        docs = list(sample_corpus.sample_documents())
        root = sysconfig.get_paths()["purelib"]
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(f for f in filenames if f.endswith(".py")):
                sentences = [s for d in sample_corpus._docstrings(  # noqa: SLF001
                    os.path.join(dirpath, name))
                    for s in sample_corpus.clean_text(d)]
                if sentences:
                    docs.append(sentences)
        corpus.write_documents(docs, distinct)
    docs = list(sources.read_documents(distinct, sources.SourceConfig()))
    paths = {}
    for name, size in (("full", mb), ("half", mb / 2)):
        path = os.path.join(workdir, f"corpus_{size:g}mb.txt")
        paths[name] = path
        if os.path.exists(path):
            continue

        def copies(limit=size * 1e6):
            written, copy = 0, 0
            while True:
                for i in np.random.default_rng(copy).permutation(len(docs)):
                    if written >= limit:
                        return
                    written += sum(len(s.encode()) + 1 for s in docs[i]) + 1
                    yield docs[i]
                copy += 1
        corpus.write_documents(copies(), path)
    prefix = os.path.join(workdir, f"spm{vocab_size}")
    if not os.path.exists(prefix + ".model"):
        tokenization.train_sentencepiece([distinct], vocab_size, prefix)
    paths.update(distinct=distinct, spm=prefix + ".model")
    return {k: dict(path=v, mb=round(os.path.getsize(v) / 1e6, 2))
            if k != "spm" else v for k, v in paths.items()}


# ---------------------------------------------------------------- our side
def _mean_tokens(directory, limit=5000):
    """Mean real tokens ([CLS]/[SEP] included) of the first `limit` records
    (after the timing): ours are variable length, as Google's are."""
    import numpy as np
    from data_pipeline import input as data_input
    sizes = [int(ex["input_mask"].sum()) for _, ex in
             zip(range(limit), data_input.iterate_numpy(directory))]
    return round(float(np.mean(sizes)), 1)


def side_ours(args):
    import shutil
    import tempfile
    sys.path.insert(0, ROOT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from data_pipeline import builder, tasks
    task = tasks.TaskConfig(task="mlm", masking="static", max_seq_length=SEQ,
                            max_predictions_per_seq=PREDICTIONS,
                            masked_lm_prob=0.15, short_seq_prob=0.1,
                            next_sentence=False, dupe_factor=1)
    out = tempfile.mkdtemp(prefix="bench_data_build_", dir=args.workdir)
    try:
        memory = PeakMemory()
        memory.start()
        cpu, start = _cpu_seconds(), time.perf_counter()
        manifests = builder.build(args.corpus, args.spm, out, task=task,
                                  num_workers=args.workers, seed=12345)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        peak = memory.stop()
        tokens = _mean_tokens(os.path.join(out, "train"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    _report(f"ours_w{args.workers}", manifests["train"].num_examples, seconds,
            cpu, peak, dict(workers=args.workers, mean_tokens=tokens,
                            corpus_mb=round(os.path.getsize(args.corpus) / 1e6, 2)))


# ---------------------------------------------------------------- HF side
def side_hf(args):
    import numpy as np
    import tokenizers
    import transformers
    from transformers import (DataCollatorForLanguageModeling,
                              PreTrainedTokenizerFast)
    path = os.path.join(args.workdir, f"hf_wordpiece{args.vocab_size}.json")
    if not os.path.exists(path):  # Trained once, outside the timing.
        tok = tokenizers.BertWordPieceTokenizer(lowercase=False)
        tok.train([args.distinct], vocab_size=args.vocab_size,
                  special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        tok.save(path)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=path, unk_token="[UNK]", pad_token="[PAD]",
        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    collator = DataCollatorForLanguageModeling(
        tokenizer=tok, mlm_probability=0.15, return_tensors="np", seed=0,
        whole_word_mask=args.wwm)
    memory = PeakMemory()
    memory.start()
    cpu, start = _cpu_seconds(), time.perf_counter()
    with open(args.corpus, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    # run_mlm.py: tokenize every line, concatenate, cut into SEQ-token blocks.
    enc = tok(lines, return_special_tokens_mask=True,
              return_offsets_mapping=args.wwm)
    keys = ["input_ids", "special_tokens_mask"] + (
        ["offset_mapping"] if args.wwm else [])
    flat = {k: [x for row in enc[k] for x in row] for k in keys}
    blocks = len(flat["input_ids"]) // SEQ
    masked = 0
    for b in range(0, blocks, BATCH):
        batch = [{k: flat[k][i * SEQ:(i + 1) * SEQ] for k in keys}
                 for i in range(b, min(b + BATCH, blocks))]
        out = collator(batch)
        masked += int((out["labels"] != -100).sum())
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    _report("hf_wwm" if args.wwm else "hf", blocks, seconds, cpu,
            memory.stop(), dict(mean_tokens=SEQ, masked_frac=round(masked / (blocks * SEQ), 4),
                                transformers=transformers.__version__,
                                tokenizers=tokenizers.__version__,
                                numpy=np.__version__, vocab=tok.vocab_size))


# ---------------------------------------------------------------- the run
def _items(args, data):
    me = [args.python, "-m", "bench.data_build", "--workdir", args.workdir]
    ours = lambda w, c: me + ["--side", "ours", "--workers", str(w),  # noqa: E731
                              "--corpus", data[c]["path"], "--spm", data["spm"]]
    hf = [args.hf_python, os.path.join(HERE, "data_build.py"), "--workdir",
          args.workdir, "--side", "hf", "--corpus", data["full"]["path"],
          "--distinct", data["distinct"]["path"], "--vocab_size",
          str(args.vocab_size)]
    items = {"ours_w1": ours(1, "full"), "ours_w2": ours(2, "full"),
             "hf": hf, "hf_wwm": hf + ["--wwm"],
             "ours_w1_half": ours(1, "half")}
    if args.only:
        items = {k: v for k, v in items.items() if k in args.only.split(",")}
    if not os.path.exists(args.hf_python):
        print(f"{args.hf_python} missing (bash bench/peers/setup.sh hf-data): "
              "skipping the HF items", flush=True)
        items = {k: v for k, v in items.items() if not k.startswith("hf")}
    return items


def _ratio(rows, a, b, round_wise):
    """Median over rounds of a/b, each round's two figures from that round."""
    if a not in rows or b not in rows:
        return None
    per_round = [x / y for x, y in zip(rows[a]["values"], rows[b]["values"])]
    return statistics.median(per_round) if round_wise else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", choices=["ours", "hf"], help="(internal) one item")
    ap.add_argument("--workdir", default="/tmp/bench_data_build")
    ap.add_argument("--mb", type=float, default=20.0, help="corpus size, MB")
    ap.add_argument("--vocab_size", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated item names")
    ap.add_argument("--python", default=sys.executable, help="our venv's python")
    ap.add_argument("--hf_python", default=f"{PEERS}/hf-data/bin/python")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--corpus")
    ap.add_argument("--distinct")
    ap.add_argument("--spm")
    ap.add_argument("--wwm", action="store_true")
    ap.add_argument("--out", default="/tmp/bench_data.jsonl")
    args = ap.parse_args(argv)
    if args.side == "ours":
        return side_ours(args)
    if args.side == "hf":
        return side_hf(args)

    os.chdir(ROOT)
    sys.path.insert(0, os.path.join(HERE, "peers"))
    import run_peers  # noqa: E402
    data = prepare(args.workdir, args.mb, args.vocab_size)
    print(f"corpus {data['full']['mb']} MB (half {data['half']['mb']} MB), "
          f"distinct text {data['distinct']['mb']} MB, {data['spm']}", flush=True)
    items = _items(args, data)
    recs = run_peers.run_rounds(
        items, args.rounds, args.out,
        lambda rec: (f"load={rec['load1_before']:.2f} inst/s={rec.get('inst_per_s', 0):.0f} "
                     f"cpu%={rec['cpu_pct']} tree PSS={rec.get('tree_peak_pss_mib')}MiB"))
    table(recs, list(items), data, args)


def table(recs, names, data, args):
    rows = {}
    for name in names:
        rs = [r for r in recs if r["item"] == name and "inst_per_s" in r]
        if not rs:
            continue
        v = [r["inst_per_s"] for r in rs]
        rows[name] = dict(values=v, median=statistics.median(v), min=min(v),
                          max=max(v), per_cpu=statistics.median(r["inst_per_cpu_s"] for r in rs),
                          cpu_pct=[r["cpu_pct"] for r in rs],
                          rss=max(r["tree_peak_rss_mib"] for r in rs),
                          pss=max(r["tree_peak_pss_mib"] for r in rs),
                          maxrss=max(r["maxrss_mib_time_v"] or 0 for r in rs),
                          load=[r["load1_before"] for r in rs],
                          instances=rs[0]["instances"],
                          tokens=rs[0].get("mean_tokens") or 0)
    print(f"\n## data build: median of {args.rounds} rounds [min-max], "
          f"{time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} CPUs, "
          f"corpus {data['full']['mb']} MB")
    print("| item | instances (mean tokens) | instances/s | tokens/s | instances per CPU-s | CPU% | tree peak PSS / RSS MiB | largest process MiB | load before |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['instances']} ({r['tokens']:.0f}) | {r['median']:.0f} [{r['min']:.0f}-{r['max']:.0f}] | "
              f"{r['median'] * r['tokens']:,.0f} | {r['per_cpu']:.0f} | {min(r['cpu_pct'])}-{max(r['cpu_pct'])} | "
              f"{r['pss']:.0f} / {r['rss']:.0f} | {r['maxrss']:.0f} | "
              f"{min(r['load']):.1f}-{max(r['load']):.1f} |")
    result = {"google_per_core": GOOGLE_PER_CORE}
    checks = []
    if "ours_w1" in rows:
        x = rows["ours_w1"]["median"] / GOOGLE_PER_CORE
        per_cpu = rows["ours_w1"]["per_cpu"] / GOOGLE_PER_CORE
        result.update(ours_w1=rows["ours_w1"]["median"], vs_google=x,
                      vs_google_per_cpu_s=per_cpu)
        checks.append(("1 worker vs Google's 1,288/s per core", x, GOALS["google_x"]))
    if "ours_w2" in rows and "ours_w1" in rows:
        s = _ratio(rows, "ours_w2", "ours_w1", True)
        result.update(ours_w2=rows["ours_w2"]["median"], scaling=s)
        checks.append(("2 workers / 1 worker (same round)", s, GOALS["scaling"]))
    for hf in ("hf", "hf_wwm"):
        if hf in rows and "ours_w1" in rows:
            r = _ratio(rows, "ours_w1", hf, True)
            result[f"{hf}"] = rows[hf]["median"]
            result[f"ours_w1_vs_{hf}"] = r
            result[f"ours_w1_vs_{hf}_tokens"] = r * rows["ours_w1"]["tokens"] / rows[hf]["tokens"]
            print(f"ours 1 worker / {hf} in tokens/s (same round): "
                  f"{result[f'ours_w1_vs_{hf}_tokens']:.2f}x")
            checks.append((f"ours 1 worker / {hf} (same round)", r, GOALS["hf_x"]))
    if "ours_w1_half" in rows and "ours_w1" in rows:
        result.update(pss_full=rows["ours_w1"]["pss"], pss_half=rows["ours_w1_half"]["pss"])
        print(f"peak PSS, 1 worker: {rows['ours_w1']['pss']:.0f} MiB at "
              f"{data['full']['mb']} MB vs {rows['ours_w1_half']['pss']:.0f} MiB at "
              f"{data['half']['mb']} MB")
    for label, value, goal in checks:
        verdict = "met" if value >= goal else f"MISSED by {goal / value - 1:.1%}"
        print(f"goal {label}: {value:.2f}x (goal {goal}x): {verdict}")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
