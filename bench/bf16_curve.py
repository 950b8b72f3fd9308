#!/usr/bin/env python
"""Does `mixed_bfloat16` training track float32? Loss curves on real text.

Issue 9 asks that bf16 "runs and its loss curve tracks fp32 over 200 steps".
This trains the same model twice from the same seed on the same records —
float32, then `train.mixed_precision = mixed_bfloat16` — with our trainer's
real step (whole-step XLA unless --jit 0), and compares the logged training
loss window by window, then the held-out loss and masked-LM accuracy.

Data: the built-in sample corpus (Python's documentation) through the demo's
own path (SentencePiece, 8,000 pieces; masked-LM records, seq 128, 20
predictions), built once into --data_dir and reused. Model: config S's shape
(L4 H256 A4 I1024), vocab 8,000; batch 32; AdamW, 1e-3 with 20 warmup steps
and linear decay. Random token ids (bench/train_step.py) would not do here:
their loss hardly moves, so any two curves "track".

"Tracks" means: each logged window's bf16 loss within --tolerance (relative)
of float32's, and both curves fall by at least 1.0 nat. Prints a table and,
last, `RESULT {json}`.

Example:
  python -m bench.bf16_curve --steps 200
"""
import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from pretraining import cpu_env  # noqa: E402

VOCAB = 8000
MIN_DROP = 1.0  # nats each curve must fall, so that "tracking" means something


def experiment_for(data_dir, precision, args):
    from pretraining.config import ExperimentConfig
    return ExperimentConfig.from_dict({
        "task": "mlm",
        "model": {"vocab_size": VOCAB, "hidden_size": 256, "num_hidden_layers": 4,
                  "num_attention_heads": 4, "intermediate_size": 1024,
                  "max_position_embeddings": 128, "hidden_dropout_prob": 0.1,
                  "attention_probs_dropout_prob": 0.1},
        "data": {"train_dir": os.path.join(data_dir, "train"),
                 "eval_dir": os.path.join(data_dir, "eval"), "shuffle_buffer": 10000},
        "optimizer": {"name": "adamw", "learning_rate": args.learning_rate,
                      "warmup_steps": max(1, args.steps // 10), "end_learning_rate": 0.0,
                      "weight_decay": 0.01},
        "train": {"steps": args.steps, "global_batch_size": 32, "seed": args.seed,
                  "steps_per_loop": args.log_every, "log_every": args.log_every,
                  "checkpoint_every": args.steps, "eval_steps": args.eval_steps,
                  "jit_compile": bool(args.jit),
                  "mixed_precision": "mixed_bfloat16" if precision == "bf16" else ""},
    })


def train_once(data_dir, run_dir, precision, args):
    """Trains from scratch; returns the per-window records and the summary."""
    from pretraining.trainer import Trainer
    model_dir = os.path.join(run_dir, precision)
    shutil.rmtree(model_dir, ignore_errors=True)
    start = time.time()
    trainer = Trainer(experiment_for(data_dir, precision, args), model_dir)
    summary = trainer.train()
    return trainer.log.records(), summary, time.time() - start


def compare(fp32, bf16, tolerance):
    """Window-by-window relative gap of the bf16 loss to float32's."""
    if [r["step"] for r in fp32] != [r["step"] for r in bf16]:
        raise ValueError(f"the two runs logged different steps: "
                         f"{[r['step'] for r in fp32]} vs {[r['step'] for r in bf16]}")
    gaps = [abs(b["loss"] - f["loss"]) / f["loss"] for f, b in zip(fp32, bf16)]
    drops = [r[0]["loss"] - r[-1]["loss"] for r in (fp32, bf16)]
    tracks = max(gaps) <= tolerance and min(drops) >= MIN_DROP
    return {"max_rel_gap": max(gaps), "mean_rel_gap": sum(gaps) / len(gaps),
            "fp32_drop": drops[0], "bf16_drop": drops[1], "tracks": tracks, "gaps": gaps}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--log_every", type=int, default=10, help="steps per logged window")
    ap.add_argument("--learning_rate", type=float, default=1e-3)
    ap.add_argument("--jit", type=int, default=1, choices=[0, 1], help="train.jit_compile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval_steps", type=int, default=20, help="held-out batches (0: all)")
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="largest relative gap of a window's bf16 loss to float32's")
    ap.add_argument("--data_dir", default="/tmp/bench_bf16/data",
                    help="sample-corpus records (built here if missing)")
    ap.add_argument("--run_dir", default="/tmp/bench_bf16/runs")
    args = ap.parse_args(argv)
    cpu_env.apply_defaults()  # before TensorFlow loads, as `python -m pretraining.train` does
    if args.steps < 2 * args.log_every or args.steps % args.log_every:
        raise SystemExit(f"--steps must be a multiple of --log_every and at least two windows. "
                         f"Received: --steps={args.steps} --log_every={args.log_every}")

    from absl import logging
    logging.set_verbosity(logging.INFO)  # the trainer's progress lines (loss, examples/s, ETA)
    from pretraining import demo
    demo.prepare_data(args.data_dir, VOCAB)

    runs = {p: train_once(args.data_dir, args.run_dir, p, args) for p in ("fp32", "bf16")}
    fp32, bf16 = runs["fp32"][0], runs["bf16"][0]
    result = compare(fp32, bf16, args.tolerance)

    print(f"\n## bf16 vs fp32: config S shape, vocab {VOCAB}, batch 32, {args.steps} steps, "
          f"jit {args.jit}, seed {args.seed}, {time.strftime('%Y-%m-%d %H:%M')} UTC")
    print("| step | fp32 loss | bf16 loss | rel. gap |")
    print("|---|---|---|---|")
    for f, b, gap in zip(fp32, bf16, result["gaps"]):
        print(f"| {f['step']} | {f['loss']:.4f} | {b['loss']:.4f} | {gap:.3%} |")
    print("\n| run | held-out loss | held-out MLM acc. | examples/s | wall s |")
    print("|---|---|---|---|---|")
    for name, (_, summary, wall) in runs.items():
        print(f"| {name} | {summary['eval_loss']:.4f} | {summary['eval_masked_lm_accuracy']:.2%} "
              f"| {summary['examples_per_second']:.1f} | {wall:.0f} |")
    verdict = "met" if result["tracks"] else "MISSED"
    print(f"\ngoal bf16 tracks fp32: largest window gap {result['max_rel_gap']:.2%} "
          f"(tolerance {args.tolerance:.0%}), loss fell {result['fp32_drop']:.2f} (fp32) and "
          f"{result['bf16_drop']:.2f} (bf16) nats (at least {MIN_DROP}): {verdict}")
    result.update({
        "item": "bf16_curve", "steps": args.steps, "jit": args.jit,
        "gaps": [round(g, 6) for g in result["gaps"]],
        "fp32_losses": [round(r["loss"], 5) for r in fp32],
        "bf16_losses": [round(r["loss"], 5) for r in bf16],
        **{f"{name}_{key}": summary[key] for name, (_, summary, _) in runs.items()
           for key in ("eval_loss", "eval_masked_lm_accuracy", "examples_per_second")},
    })
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
