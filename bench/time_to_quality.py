#!/usr/bin/env python
"""Time to quality, side by side with Hugging Face (issue 25): `make bench SUITE=quality`.

Both sides train on the same records and are scored on the same held-out
records. Once, into --work_dir: the demo's data (`pretraining.demo.prepare_data`:
the built-in sample corpus, its 8,000-piece SentencePiece tokenizer and
`data_pipeline.build` masked-LM records, static masking, 128 tokens, up to 20
predictions, 5% of the documents held out), the exact global batches our
trainer reads for steps 1..--steps with train.seed = each seed
(`pretraining.export_batches`, one .npz per seed) and the held-out records
(.npz). Then, each in its own process (2 threads, under /usr/bin/time -v):

  hf_s<seed>   bench/peers/mlm_quality_hf.py on that seed's .npz: transformers
               BertForMaskedLM, torch AdamW, get_linear_schedule_with_warmup,
               loss on the masked positions (gather), gelu_new, no weight decay
               on LayerNorm and biases
  ours_s<seed> our trainer, the same recipe (the mapping below)
  best_s<seed> our trainer, the reference recipe plus the --best_override
               list (default: BEST_OVERRIDES), on records built with
               --best_build_flag when given (same tokenizer and seed, so the
               same held-out documents; scored on the reference eval records)

in the order hf_s0 ours_s0 hf_s1 ours_s1 best_s0 ..., so a noisy machine hits
both sides alike. Every run evaluates the held-out masked-LM accuracy at step 0,
every --eval_every steps and at its end, on the same eval records.

Time accounting: every point carries the wall seconds and process CPU seconds
of TRAINING since the clock started (just before training: imports, model
building and the peer's loading of its .npz are outside; our input pipeline's
set-up, graph tracing and XLA compilation are inside). Evaluations are
excluded on both sides (our side: from the start of an evaluation to the next
training call, so its TensorBoard samples too). Our runs' checkpoint at their
last step is inside their time.

Recipe mapping (the reference recipe, `Recipe`: the demo's but lr 2e-3 and
1,200 steps; the HF flag on the left, our experiment field on the right;
`Recipe.hf_flags` and `Recipe.ours_overrides` are written from the same values):
  --layers/--hidden/--heads/--inter     model.num_hidden_layers/hidden_size/
  /--vocab/--max_pos/--type_vocab       num_attention_heads/intermediate_size/
                                        vocab_size/max_position_embeddings/type_vocab_size
  hidden_act gelu_new (tanh GELU)       model.hidden_act = gelu (Google's tanh form)
  --dropout (hidden and attention)      model.hidden_dropout_prob, attention_probs_dropout_prob
  initializer_range 0.02                model.initializer_range = 0.02
  --lr / --warmup                       optimizer.learning_rate / warmup_steps
  get_linear_schedule_with_warmup       optimizer.schedule = linear, end_learning_rate = 0
                                        (first update at rate 0 on both sides)
  AdamW betas 0.9/0.999, eps 1e-6       optimizer.name = adamw, beta_1, beta_2, epsilon,
                                        bias_correction = true
  --wd on ndim >= 2 only                optimizer.weight_decay, weight_decay_min_rank = 2,
                                        weight_decay_exclude = []
  --clip (global norm)                  optimizer.clip_norm
  batch (the .npz's)                    train.global_batch_size
  steps (the .npz's)                    train.steps
  --seed (torch.manual_seed)            train.seed (also the data order of that seed's .npz)
  no accumulation, EMA or Lookahead     train.gradient_accumulation_steps = 1,
                                        optimizer.ema_decay = 0, lookahead_steps = 0
Known differences that remain: the initial weights are drawn by each framework
(ours truncated normal, HF normal, both stddev 0.02), so are the dropout masks;
Keras's Adam adds epsilon to the uncorrected sqrt(v) (torch to the corrected
one). Implementation settings that are not recipe: ours runs with
train.jit_compile = --ours_jit, steps_per_loop 50, a checkpoint at the end only.

--reuse takes every run whose command and spec match an earlier finished run in
--work_dir from that run (its curve and times), so an ablation adds one best
recipe at a time (--best_name NAME, --best_override ...) beside the same HF and
ours runs; the figures then cover the runs of this invocation.

Figures (means over seeds; "HF's final accuracy" is the mean of the HF runs'
last held-out accuracy, "HF's time" the mean of their training wall seconds):
  1. learning parity: ours_ref - HF final accuracy, against the seed-to-seed
     spread (|seed 0 - seed 1|, the larger side's). Goal: ours >= HF - spread.
  2. speed at equal recipe: our wall time to HF's final accuracy (linear
     between eval points) / HF's time. Goal: <= 1/1.3.
  3. time to quality, best recipe: the same for best. Goal: <= 0.5.
Verdicts "met" or "MISSED by N%" (how much more accuracy / how much faster ours
would have to be). Prints a table, the goals and `RESULT {json}` last; every
point of every curve goes to WORK_DIR/curves.json.

Budget (check runs on the 2-core VM shared with other jobs, load 5-13, every
process under nice -n 19; not the figures): on the demo's records the held-out
accuracy plateaus at ~12.5% from step ~1000 (ours, seed 0: 12.59% at step 1000
and 12.49% at 1200 of a 1,200-step run; 12.46% at 2000 of a 2,000-step run), so
the reference budget is 1,200 steps, evaluated every 100 (3,162 held-out
predictions: one evaluation ~1 s). Our step costs ~0.29 CPU-s, HF's ~0.44 CPU-s
on one thread (with 2 threads on a loaded machine 1.1-2.0 CPU-s: torch's
threads spin), so on 2 idle cores about 4 min per ours run and 5-6 per HF run:
~25 min for the suite with records, exports and process starts.

Learning rate: with the demo's 3e-3 our seed-1 run diverged at step ~200
(gradient norm 3.97) and stayed at the unigram plateau (4-5%) for 2,000 steps,
while seed 0 learned; HF's seed 1 at 3e-3 left the plateau by step 200, and
ours at 2e-3 did (9.68% at step 300, seed 0 at 3e-3: 9.04%). One divergence is
no evidence of a systematic difference (the two sides draw different initial
weights), but a reference recipe must train on both seeds: 2e-3.

Best recipe (BEST_OVERRIDES, BEST_BUILD_FLAGS; ours, seed 0, lr 3e-3, step:
held-out %): dropout off, 1,000-step schedule: 200 8.6, 300 10.18, 400 11.23;
600 11.92; plus 30% masking (max 40 predictions per sequence), 1,000 steps:
200 9.11, 400 12.37, 500 12.43, 600 13.41, 1000 13.16, at ~1.3x the
reference's CPU-s per step (twice the masked-LM head's positions, no dropout
masks); the same with a 500-step schedule: 300 10.56, 400 11.95, 500 11.99
(short of the ~12.5% plateau). Hence the default: 30% masking, dropout off,
lr 3e-3, 700 steps: it should pass 12.5% near step 550, ~0.6x our reference's
time (~0.45x HF's if ours_ref is 1.3x faster): to be confirmed by the long run.

Examples:
  python -m bench.time_to_quality                       # the default suite
  python -m bench.time_to_quality --steps 100 --eval_every 50 --only hf,ours
  python -m bench.time_to_quality --plot /tmp/ttq.png
  python -m bench.time_to_quality --shape S --steps 600   # ~5x the demo shape's step time
  python -m bench.time_to_quality --only best --best_name nodrop --best_build_flag none \\
      --best_override model.hidden_dropout_prob=0 \\
      --best_override model.attention_probs_dropout_prob=0
  python -m bench.time_to_quality --best_override optimizer.learning_rate=0.006 \\
      --best_build_flag masked_lm_prob=0.3 --best_build_flag max_predictions_per_seq=40
"""
import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(HERE, "peers"))

PEERS = os.environ.get("PEERS", "/tmp/peers")
DEMO_EXPERIMENT = os.path.join(ROOT, "configs", "experiments", "demo.json")
DEMO_MODEL = os.path.join(ROOT, "configs", "models", "bert_demo.json")
# Shapes on the demo's model config (vocab 8,000: the demo's tokenizer; 128 positions).
SHAPES = {
    "demo": {},
    "S": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
          "intermediate_size": 1024},
}
SPEED_GOAL = 1 / 1.3  # figure 2: our time to HF's final accuracy / HF's time
BEST_GOAL = 0.5  # figure 3
# The "best" recipe: overrides on top of the reference recipe (documented fields only).
# Measured on seed 0 only (docstring); the long run and its ablation may change it.
BEST_OVERRIDES = [
    "model.hidden_dropout_prob=0.0",
    "model.attention_probs_dropout_prob=0.0",
    "optimizer.learning_rate=0.003",
    "train.steps=700",
]
# Its own records: 30% of the tokens masked (up to 40 of 128), the same documents held out.
BEST_BUILD_FLAGS = ["masked_lm_prob=0.3", "max_predictions_per_seq=40"]
THREADS = 2


@dataclasses.dataclass
class Recipe:
    """The reference recipe, one value per setting, for both sides."""

    steps: int = 1200
    batch: int = 32
    learning_rate: float = 2e-3  # the demo's 3e-3 lost seed 1 on our side (docstring)
    warmup: int = 100
    weight_decay: float = 0.01
    clip: float = 1.0
    dropout: float = 0.1
    eval_every: int = 100

    def hf_flags(self, model: dict, seed: int) -> list:
        """The peer script's flags for `model` (our model config dict)."""
        return ["--vocab", model["vocab_size"], "--layers", model["num_hidden_layers"],
                "--hidden", model["hidden_size"], "--heads", model["num_attention_heads"],
                "--inter", model["intermediate_size"],
                "--max_pos", model["max_position_embeddings"],
                "--type_vocab", model["type_vocab_size"], "--dropout", self.dropout,
                # Our schedule caps warmup at train.steps (optimizers.factory); HF's does not.
                "--lr", self.learning_rate, "--warmup", min(self.warmup, self.steps),
                "--wd", self.weight_decay,
                "--clip", self.clip, "--steps", self.steps, "--seed", seed,
                "--eval_every", self.eval_every, "--eval_at_start", 1, "--threads", THREADS]

    def ours_overrides(self, model: dict, seed: int, jit: bool) -> list:
        """Our experiment overrides (on the demo experiment) for the same run."""
        fields = {f"model.{k}": v for k, v in model.items()}
        fields.update({
            "model.hidden_act": "gelu", "model.initializer_range": 0.02,
            "model.hidden_dropout_prob": self.dropout,
            "model.attention_probs_dropout_prob": self.dropout,
            "optimizer.name": "adamw", "optimizer.learning_rate": self.learning_rate,
            "optimizer.warmup_steps": self.warmup, "optimizer.schedule": "linear",
            "optimizer.end_learning_rate": 0.0, "optimizer.weight_decay": self.weight_decay,
            "optimizer.weight_decay_min_rank": 2, "optimizer.weight_decay_exclude": [],
            "optimizer.beta_1": 0.9, "optimizer.beta_2": 0.999, "optimizer.epsilon": 1e-6,
            "optimizer.bias_correction": True, "optimizer.clip_norm": self.clip,
            "optimizer.ema_decay": 0.0, "optimizer.lookahead_steps": 0,
            "train.steps": self.steps, "train.global_batch_size": self.batch, "train.seed": seed,
            "train.gradient_accumulation_steps": 1, "train.eval_every": self.eval_every,
            "train.eval_steps": 0, "train.checkpoint_every": self.steps,
            "train.jit_compile": bool(jit), "train.steps_per_loop": 50,
        })
        return [f"{k}={json.dumps(v) if isinstance(v, (bool, list)) else v}"
                for k, v in fields.items()]


def model_config(shape: str) -> dict:
    """The demo's model config with `SHAPES[shape]` applied."""
    with open(DEMO_MODEL, encoding="utf-8") as f:
        model = json.load(f)
    model.update(SHAPES[shape])
    return model


# ---------------------------------------------------------------- figures
def time_to_reach(points: list, target: float, key: str = "wall_s"):
    """`key` (seconds) at which the held-out accuracy first reaches `target`,
    linear between the eval points around it; None when it never does.

    Args:
        points: list of dicts with `step`, `eval_masked_lm_accuracy` and `key`.
        target: float. The accuracy to reach.
        key: str. The time field. Defaults to "wall_s".
    """
    points = sorted(points, key=lambda p: p["step"])
    for i, p in enumerate(points):
        acc = p["eval_masked_lm_accuracy"]
        if acc >= target:
            if i == 0:
                return float(p[key])
            q = points[i - 1]
            a0, t0 = q["eval_masked_lm_accuracy"], q[key]
            return float(t0 + (target - a0) / (acc - a0) * (p[key] - t0))
    return None


def _percent(fraction: float) -> str:
    """12% (0.4% below 1%: never "MISSED by 0%")."""
    return f"{fraction:.0%}" if fraction >= 0.01 else f"{fraction:.1%}"


def verdict_at_least(value: float, goal: float) -> str:
    """'met' or 'MISSED by N%' (how much more `value` would need)."""
    if value >= goal:
        return "met"
    return f"MISSED by {_percent(goal / value - 1)}" if value > 0 else "MISSED"


def verdict_at_most(value, goal: float) -> str:
    """'met' or 'MISSED by N%' (how much smaller, i.e. faster, `value` would
    need to be); None (the target never reached) is MISSED."""
    if value is None:
        return "MISSED (HF's final accuracy never reached)"
    if value <= goal:
        return "met"
    return f"MISSED by {_percent(value / goal - 1)}"


def final(points: list) -> dict:
    return max(points, key=lambda p: p["step"])


def spread(values: list) -> float:
    """Seed-to-seed spread: max - min (|seed 0 - seed 1| for two seeds)."""
    return max(values) - min(values) if len(values) > 1 else 0.0


def figures(runs: dict) -> dict:
    """The three figures from the runs' curves.

    Args:
        runs: dict name -> {"kind": "hf" | "ours" | "best", "seed": int,
            "points": [{"step", "eval_masked_lm_accuracy", "wall_s", "cpu_s"}]}.
            Runs without points (failed) are left out.

    Returns:
        dict with `target` (HF's mean final accuracy), `hf_wall_s`, per-kind
        finals, and `parity`, `speed`, `best` (each with its value, goal and
        verdict; None where a side has no runs).
    """
    by_kind = {}
    for name, run in runs.items():
        if run.get("points"):
            by_kind.setdefault(run["kind"], []).append(dict(run, name=name))
    out = {"parity": None, "speed": None, "best": None}
    hf = by_kind.get("hf", [])
    if not hf:
        return out
    hf_acc = [final(r["points"])["eval_masked_lm_accuracy"] for r in hf]
    target = statistics.mean(hf_acc)
    hf_wall = statistics.mean(final(r["points"])["wall_s"] for r in hf)
    hf_cpu = statistics.mean(final(r["points"])["cpu_s"] for r in hf)
    out.update(target=target, hf_wall_s=hf_wall, hf_cpu_s=hf_cpu, hf_final=hf_acc,
               hf_spread=spread(hf_acc))
    for run in hf + by_kind.get("ours", []) + by_kind.get("best", []):
        run_wall = time_to_reach(run["points"], target)
        run_cpu = time_to_reach(run["points"], target, "cpu_s")
        out.setdefault("time_to_target", {})[run["name"]] = {
            "wall_s": run_wall, "cpu_s": run_cpu,
            "wall_ratio": None if run_wall is None else run_wall / hf_wall}
    ours = by_kind.get("ours", [])
    if ours:
        ours_acc = [final(r["points"])["eval_masked_lm_accuracy"] for r in ours]
        noise = max(spread(ours_acc), spread(hf_acc))
        ours_mean = statistics.mean(ours_acc)
        out["parity"] = {"ours": ours_mean, "hf": target, "diff": ours_mean - target,
                         "ours_final": ours_acc, "ours_spread": spread(ours_acc),
                         "hf_spread": spread(hf_acc), "spread": noise,
                         "goal": target - noise,
                         "verdict": verdict_at_least(ours_mean, target - noise)}
        out["speed"] = _time_figure(ours, out, SPEED_GOAL)
    best = by_kind.get("best", [])
    if best:
        out["best"] = _time_figure(best, out, BEST_GOAL)
    return out


def _time_figure(runs: list, out: dict, goal: float) -> dict:
    """Mean over `runs` of the wall time to HF's final accuracy / HF's time;
    None (never reached) when any run never reaches it."""
    times = [out["time_to_target"][r["name"]]["wall_s"] for r in runs]
    cpus = [out["time_to_target"][r["name"]]["cpu_s"] for r in runs]
    reached = all(t is not None for t in times)
    ratio = statistics.mean(times) / out["hf_wall_s"] if reached else None
    cpu_ratio = (statistics.mean(cpus) / out["hf_cpu_s"]
                 if all(c is not None for c in cpus) else None)
    return {"wall_s": statistics.mean(times) if reached else None, "ratio": ratio,
            "cpu_ratio": cpu_ratio, "goal": goal, "verdict": verdict_at_most(ratio, goal),
            "final": [final(r["points"])["eval_masked_lm_accuracy"] for r in runs]}


def report(runs: dict, figs: dict, recipes: dict) -> str:
    """The table and the goal lines (text)."""
    lines = [f"\n## time to quality: {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} CPUs, "
             f"{THREADS} threads per run; seconds are TRAINING time (evaluations excluded on "
             "both sides)",
             "| run | final held-out acc | final loss | steps | train wall s | train CPU s "
             "| s/step | wall s to HF's final acc | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    ttt = figs.get("time_to_target", {})
    for name, run in runs.items():
        if not run.get("points"):
            lines.append(f"| {name} | FAILED (rc={run.get('rc')}) | | | | | | | |")
            continue
        last = final(run["points"])
        t = ttt.get(name, {}).get("wall_s")
        lines.append(
            f"| {name} | {last['eval_masked_lm_accuracy']:.2%} | {last['eval_loss']:.3f} | "
            f"{last['step']} | {last['wall_s']:.0f} | {last['cpu_s']:.0f} | "
            f"{last['wall_s'] / max(last['step'], 1):.3f} | "
            f"{'not reached' if t is None else f'{t:.0f}'} | {run.get('rss') or 0:.0f} |")
    for kind, text in recipes.items():
        lines.append(f"recipe {kind}: {text}")
    if figs.get("target") is not None:
        lines.append(f"HF's final held-out accuracy (target) {figs['target']:.2%}, "
                     f"HF's training time {figs['hf_wall_s']:.0f} s wall, "
                     f"{figs['hf_cpu_s']:.0f} s CPU")
    p = figs.get("parity")
    if p:
        lines.append(
            f"goal 1 (learning parity): ours_ref {p['ours']:.2%} - HF {p['hf']:.2%} = "
            f"{100 * p['diff']:+.2f} points; seed spread ours {100 * p['ours_spread']:.2f}, "
            f"HF {100 * p['hf_spread']:.2f} points (goal ours >= HF - spread = "
            f"{p['goal']:.2%}): {p['verdict']}")
    for n, key, goal_text in ((2, "speed", "1/1.3 = 0.77"), (3, "best", "0.5")):
        f = figs.get(key)
        if not f:
            continue
        what = "speed at equal recipe: ours_ref" if key == "speed" else "best recipe: best"
        value = "not reached" if f["ratio"] is None else (
            f"{f['wall_s']:.0f} s / {figs['hf_wall_s']:.0f} s = {f['ratio']:.2f}x HF's time"
            + (f" (CPU {f['cpu_ratio']:.2f}x)" if f["cpu_ratio"] is not None else ""))
        lines.append(f"goal {n} ({what} wall time to HF's final accuracy): {value} "
                     f"(goal <= {goal_text}): {f['verdict']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- preparation (child)
def parse_build_flags(items: list) -> dict:
    """`name=value` strings -> keyword arguments of `data_pipeline.build.build_mlm`,
    typed by that function's defaults (ValueError names the bad one)."""
    import inspect

    from data_pipeline import build
    params = inspect.signature(build.build_mlm).parameters
    allowed = ("max_predictions_per_seq", "masked_lm_prob", "short_seq_prob", "dupe_factor",
               "whole_word_masking", "max_seq_length")
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in allowed:
            raise ValueError(f"--best_build_flag {item!r}: expected NAME=VALUE with NAME one of "
                             f"{list(allowed)}")
        kind = type(params[name].default)
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[name] = raw.lower() in ("true", "1")
            else:
                out[name] = kind(raw)
        except ValueError:
            raise ValueError(f"--best_build_flag {item!r}: {name} must be a "
                             f"{kind.__name__}") from None
    return out


def prepare(spec: dict) -> dict:
    """Builds the records, the best recipe's records and the .npz exports
    (in this process: it imports TensorFlow). Reuses what `spec` matches."""
    import numpy as np

    from data_pipeline import build
    from data_pipeline import input as data_input
    from pretraining import demo, export_batches
    from pretraining.config import ExperimentConfig

    work = spec["work_dir"]
    data_dir = os.path.join(work, "data")
    stamp = os.path.join(work, "prepared.json")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            if json.load(f) == spec:
                print(f"reusing {work} (prepared.json matches)", flush=True)
                return spec
    t0 = time.time()
    demo.prepare_data(data_dir, spec["vocab_size"])
    if spec["best_build_flags"]:
        kwargs = dict(max_seq_length=demo.MAX_SEQ_LENGTH,
                      max_predictions_per_seq=demo.MAX_PREDICTIONS_PER_SEQ, seed=demo.SEED,
                      num_shards=2, eval_fraction=demo.EVAL_FRACTION,
                      dupe_factor=demo.DUPE_FACTOR)
        kwargs.update(parse_build_flags(spec["best_build_flags"]))
        build.build_mlm([os.path.join(data_dir, "corpus.txt")],
                        os.path.join(data_dir, "spm.model"), os.path.join(work, "best_data"),
                        source="built-in sample, best recipe's build", overwrite=True, **kwargs)
    for seed in spec["seeds"]:
        experiment = ExperimentConfig.from_json(DEMO_EXPERIMENT, overrides=[
            f"data.train_dir={data_dir}/train", f"data.eval_dir={data_dir}/eval",
            f"train.seed={seed}", f"train.global_batch_size={spec['batch']}"])
        export_batches.export(experiment, spec["steps"],
                              os.path.join(work, f"train_s{seed}.npz"))
    examples = list(data_input.iterate_numpy(os.path.join(data_dir, "eval")))
    names = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
             "masked_lm_ids", "masked_lm_weights")
    tmp = os.path.join(work, "eval.tmp.npz")
    np.savez(tmp, **{k: np.stack([e[k] for e in examples]) for k in names})
    os.replace(tmp, os.path.join(work, "eval.npz"))
    with open(stamp + ".tmp", "w", encoding="utf-8") as f:
        json.dump(spec, f)
    os.replace(stamp + ".tmp", stamp)
    print(f"prepared {work} in {time.time() - t0:.0f} s ({len(examples)} held-out examples)",
          flush=True)
    return spec


# ---------------------------------------------------------------- our run (child)
class TrainClock:
    """Wall and process-CPU seconds of training: `pause()` at an evaluation,
    `resume()` at the next training call; paused time is not counted.

    Args:
        wall: callable returning wall seconds. Defaults to `time.time`.
        cpu: callable returning this process's CPU seconds. Defaults to
            `time.process_time`.
    """

    def __init__(self, wall=time.time, cpu=time.process_time):
        self._read = lambda: (wall(), cpu())
        self.start = self._read()
        self.excluded = [0.0, 0.0]
        self.paused_at = None

    def now(self) -> tuple:
        """(wall, CPU) seconds of training so far; frozen while paused."""
        at = self.paused_at or self._read()
        return tuple(at[i] - self.start[i] - self.excluded[i] for i in range(2))

    def pause(self) -> None:
        if self.paused_at is None:
            self.paused_at = self._read()

    def resume(self) -> None:
        if self.paused_at is not None:
            at = self._read()
            for i in range(2):
                self.excluded[i] += at[i] - self.paused_at[i]
            self.paused_at = None


def run_ours(spec: dict) -> None:
    """One training run of our trainer with its held-out curve (this process)."""
    from pretraining import cpu_env
    cpu_env.apply_defaults()  # as `python -m pretraining.train` does
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    from pretraining.config import ExperimentConfig
    from pretraining.trainer import Trainer

    class TimedTrainer(Trainer):
        """The trainer, with the training clock stopped during evaluations."""

        clock = None
        points = None

        def _make_train_loop(self):
            loop = super()._make_train_loop()

            def timed_loop(iterator, num_steps):
                if self.clock is not None:
                    self.clock.resume()
                return loop(iterator, num_steps)

            return timed_loop

        def evaluate(self):
            if self.clock is None:
                return super().evaluate()
            self.clock.pause()
            wall, cpu = self.clock.now()
            result = super().evaluate()
            self.points.append({"step": int(self.state.step.numpy()), **result,
                                "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)})
            return result

    experiment = ExperimentConfig.from_json(DEMO_EXPERIMENT, overrides=spec["overrides"])
    trainer = TimedTrainer(experiment, spec["model_dir"], overwrite=True)
    trainer.points = []
    try:
        trainer.clock = TrainClock()
        trainer.train(stop_at=spec.get("stop_at"))  # (a check run may stop early)
    finally:
        trainer.close()
    out = os.path.join(spec["out"], "metrics.jsonl")
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(p) + "\n" for p in trainer.points)
    os.replace(out + ".tmp", out)
    last = trainer.points[-1]
    print("RESULT " + json.dumps({**last, "steps": experiment.train.steps,
                                  "seed": experiment.train.seed,
                                  "jit_compile": experiment.train.jit_compile,
                                  "threads": spec["threads"], "tensorflow": tf.__version__}))


# ---------------------------------------------------------------- the suite (parent)
def run_key(argv: list) -> dict:
    """What a run's curve depends on: its command and, for ours, its spec."""
    key = {"argv": list(argv)}
    if "--ours_child" in argv:
        with open(argv[argv.index("--ours_child") + 1], encoding="utf-8") as f:
            key["spec"] = json.load(f)
    return key


def read_points(out_dir: str) -> list:
    """The evaluation records of a run's metrics.jsonl (ours or the peer's)."""
    path = os.path.join(out_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if "eval_masked_lm_accuracy" in r]


def plot(runs: dict, figs: dict, path: str) -> None:
    """Held-out accuracy against training wall seconds, every run."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    fig, ax = pyplot.subplots(figsize=(8, 5))
    colors = {"hf": "tab:orange", "ours": "tab:blue", "best": "tab:green"}
    for name, run in runs.items():
        pts = sorted(run.get("points") or [], key=lambda p: p["step"])
        if pts:
            ax.plot([p["wall_s"] for p in pts], [100 * p["eval_masked_lm_accuracy"] for p in pts],
                    marker="o", markersize=3, color=colors[run["kind"]],
                    linestyle="-" if run["seed"] == 0 else "--", label=name)
    if figs.get("target") is not None:
        ax.axhline(100 * figs["target"], color="gray", linewidth=0.8, linestyle=":",
                   label="HF's final accuracy")
    ax.set_xlabel("training wall seconds (evaluations excluded)")
    ax.set_ylabel("held-out masked-LM accuracy (%)")
    ax.set_title("Time to quality: ours vs Hugging Face (2 threads each)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work_dir", default="/tmp/time_to_quality",
                    help="records, exports and runs (reused when they match)")
    ap.add_argument("--shape", default="demo", choices=sorted(SHAPES))
    r = Recipe()
    ap.add_argument("--steps", type=int, default=r.steps)
    ap.add_argument("--eval_every", type=int, default=r.eval_every)
    ap.add_argument("--batch", type=int, default=r.batch)
    ap.add_argument("--lr", type=float, default=r.learning_rate)
    ap.add_argument("--warmup", type=int, default=r.warmup)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--best_seeds", default="0", help="seeds of the best recipe's runs")
    ap.add_argument("--best_name", default="best",
                    help="name of the best recipe's runs (NAME_s<seed>), to keep several")
    ap.add_argument("--best_override", action="append", default=None,
                    help="section.field=value on top of the reference recipe (repeatable; "
                         f"replaces the default list {BEST_OVERRIDES})")
    ap.add_argument("--best_build_flag", action="append", default=None,
                    help="NAME=VALUE for the best recipe's own records (data_pipeline.build's "
                         "build_mlm: masked_lm_prob, max_predictions_per_seq, ...; repeatable; "
                         f"replaces the default list {BEST_BUILD_FLAGS}; 'none': the "
                         "reference records)")
    ap.add_argument("--ours_jit", type=int, default=1, choices=[0, 1],
                    help="train.jit_compile of our runs (an implementation setting)")
    ap.add_argument("--only", default="hf,ours,best", help="kinds to run: hf,ours,best")
    ap.add_argument("--plot", default="", help="PNG of held-out accuracy vs wall seconds")
    ap.add_argument("--reuse", action="store_true",
                    help="take a run's curve from an earlier run in --work_dir with the same "
                         "command and spec instead of running it again (e.g. to add one best "
                         "recipe at a time beside the same HF and ours runs)")
    ap.add_argument("--python", default=sys.executable, help="our venv's python")
    ap.add_argument("--torch_py", default=f"{PEERS}/torch/bin/python")
    ap.add_argument("--prepare_child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--ours_child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.prepare_child or args.ours_child:
        return args
    for name in ("steps", "eval_every", "batch", "warmup"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            ap.error(f"--{name} must be >= {0 if name == 'warmup' else 1}. "
                     f"Received: {getattr(args, name)}")
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s]
        args.best_seed_list = [int(s) for s in args.best_seeds.split(",") if s]
    except ValueError:
        ap.error(f"--seeds/--best_seeds must be comma-separated ints. Received: "
                 f"{args.seeds!r}, {args.best_seeds!r}")
    args.kinds = [k for k in args.only.split(",") if k]
    if set(args.kinds) - {"hf", "ours", "best"}:
        ap.error(f"--only takes hf, ours, best. Received: {args.only!r}")
    for item in args.best_override or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            ap.error(f"--best_override must look like section.field=value. Received: {item!r}")
    if args.best_build_flag is not None:
        args.best_build_flag = [f for f in args.best_build_flag if f != "none"]
    for item in args.best_build_flag or []:
        if "=" not in item:
            ap.error(f"--best_build_flag must look like NAME=VALUE. Received: {item!r}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            ap.error("--plot needs matplotlib, which is not installed: pip install matplotlib "
                     "(or the plot extra: pip install -e '.[plot]')")
    if "hf" in args.kinds and not os.path.exists(args.torch_py):
        ap.error(f"--torch_py {args.torch_py} does not exist: run `bash bench/peers/setup.sh "
                 "torch` (the peer venv), or --only ours,best")
    return args


def main(argv=None):
    args = parse_args(argv)
    os.chdir(ROOT)
    if args.prepare_child or args.ours_child:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
        with open(args.prepare_child or args.ours_child, encoding="utf-8") as f:
            spec = json.load(f)
        prepare(spec) if args.prepare_child else run_ours(spec)
        return
    import run_peers
    started = time.time()
    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    recipe = Recipe(steps=args.steps, batch=args.batch, learning_rate=args.lr,
                    warmup=args.warmup, eval_every=args.eval_every)
    model = model_config(args.shape)
    best_overrides = BEST_OVERRIDES if args.best_override is None else args.best_override
    best_build = BEST_BUILD_FLAGS if args.best_build_flag is None else args.best_build_flag
    spec = {"work_dir": work, "vocab_size": model["vocab_size"], "steps": recipe.steps,
            "batch": recipe.batch,
            "seeds": sorted(set(args.seed_list)) if "hf" in args.kinds else [],
            "best_build_flags": best_build if "best" in args.kinds else []}
    spec_path = os.path.join(work, "prepare_spec.json")
    with open(spec_path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    print(f"+ preparing records and exports in {work}", flush=True)
    rc = subprocess.run([args.python, "-m", "bench.time_to_quality",
                         "--prepare_child", spec_path]).returncode
    if rc:
        raise SystemExit(f"preparing {work} failed (exit {rc}); see above")
    data_dir = os.path.join(work, "data")
    data = [f"data.train_dir={data_dir}/train", f"data.eval_dir={data_dir}/eval"]

    items = {}  # name -> (kind, seed, argv, out_dir)
    def ours_item(kind, seed, overrides):
        out = os.path.join(work, "runs", f"{args.best_name if kind == 'best' else kind}_s{seed}")
        os.makedirs(out, exist_ok=True)
        child = {"overrides": overrides, "model_dir": os.path.join(out, "model"), "out": out,
                 "threads": THREADS}
        path = os.path.join(out, "spec.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(child, f, indent=1)
        return (kind, seed, [args.python, "-m", "bench.time_to_quality", "--ours_child", path],
                out)

    for seed in args.seed_list:
        if "hf" in args.kinds:
            out = os.path.join(work, "runs", f"hf_s{seed}")
            items[f"hf_s{seed}"] = ("hf", seed, [args.torch_py, os.path.join(HERE, "peers",
                                                                              "mlm_quality_hf.py"),
                                                 "--train_npz",
                                                 os.path.join(work, f"train_s{seed}.npz"),
                                                 "--eval_npz", os.path.join(work, "eval.npz"),
                                                 "--out", out,
                                                 *map(str, recipe.hf_flags(model, seed))], out)
        if "ours" in args.kinds:
            items[f"ours_s{seed}"] = ours_item(
                "ours", seed, data + recipe.ours_overrides(model, seed, args.ours_jit))
    if "best" in args.kinds:
        best_data = ([f"data.train_dir={work}/best_data/train", f"data.eval_dir={data_dir}/eval"]
                     if best_build else data)
        for seed in args.best_seed_list:
            items[f"{args.best_name}_s{seed}"] = ours_item(
                "best", seed, best_data + recipe.ours_overrides(model, seed, args.ours_jit)
                + list(best_overrides))
    recipes = {
        "reference (hf and ours)": f"shape {args.shape} ({model['num_hidden_layers']} layers, "
        f"{model['hidden_size']} wide, {model['num_attention_heads']} heads, "
        f"{model['intermediate_size']} ffn, vocab {model['vocab_size']}), batch {recipe.batch}, "
        f"{recipe.steps} steps, AdamW lr {recipe.learning_rate:g} warmup {recipe.warmup} then "
        f"linear to 0, weight decay {recipe.weight_decay:g} (matrices), clip {recipe.clip:g}, "
        f"dropout {recipe.dropout:g}, 15% static masking; ours with train.jit_compile="
        f"{bool(args.ours_jit)}",
        "best": "reference + " + " ".join(best_overrides)
        + (f", records built with {' '.join(best_build)}" if best_build else ""),
    }
    runs = {}
    for name, (kind, seed, argv, out) in items.items():
        done = os.path.join(out, "done.json")
        key = run_key(argv)
        if args.reuse and os.path.exists(done):
            with open(done, encoding="utf-8") as f:
                previous = json.load(f)
            if previous["key"] == key:
                runs[name] = {"kind": kind, "seed": seed, "points": read_points(out), "rc": 0,
                              "rss": previous["rss"], "reused": True,
                              "process_wall_s": previous["process_wall_s"]}
                print(f"{name}: reused ({done})", flush=True)
                continue
        print("+ " + " ".join(shlex.quote(a) for a in argv), flush=True)
        rec = run_peers.run_one(name, argv, 0)
        points = read_points(out)
        if rec["rc"] == 0 and points:
            with open(done + ".tmp", "w", encoding="utf-8") as f:
                json.dump({"key": key, "rss": rec.get("maxrss_mib_time_v"),
                           "process_wall_s": rec.get("process_wall_s")}, f)
            os.replace(done + ".tmp", done)
        runs[name] = {"kind": kind, "seed": seed, "points": points, "rc": rec["rc"],
                      "rss": rec.get("maxrss_mib_time_v"),
                      "process_wall_s": rec.get("process_wall_s")}
        last = final(points) if points else None
        print(f"{name}: rc={rec['rc']} process {rec.get('process_wall_s')} s, "
              + (f"step {last['step']} acc {last['eval_masked_lm_accuracy']:.4f} "
                 f"train wall {last['wall_s']:.1f} s cpu {last['cpu_s']:.1f} s"
                 if last else "no points") + f" load before {rec['load1_before']}", flush=True)
        if rec["rc"] != 0 or not points:
            print("   error:", (rec.get("error_tail") or "")[-1500:], flush=True)
    figs = figures(runs)
    print(report(runs, figs, recipes))
    with open(os.path.join(work, "curves.json.tmp"), "w", encoding="utf-8") as f:
        json.dump({"runs": runs, "figures": figs, "recipes": recipes}, f, indent=1)
    os.replace(os.path.join(work, "curves.json.tmp"), os.path.join(work, "curves.json"))
    if args.plot:
        plot(runs, figs, args.plot)
        print(f"plot: {args.plot}")
    result = {"suite": "quality", "shape": args.shape, "steps": recipe.steps,
              "eval_every": recipe.eval_every, "seeds": args.seed_list,
              "time_excludes_eval": True, "threads": THREADS,
              "suite_wall_s": round(time.time() - started),
              "target": figs.get("target"), "hf_wall_s": figs.get("hf_wall_s"),
              "parity": figs.get("parity"), "speed": figs.get("speed"), "best": figs.get("best"),
              "best_overrides": list(best_overrides), "best_build_flags": list(best_build),
              "finals": {n: final(r["points"])["eval_masked_lm_accuracy"]
                         for n, r in runs.items() if r["points"]},
              "train_wall_s": {n: final(r["points"])["wall_s"]
                               for n, r in runs.items() if r["points"]}}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
