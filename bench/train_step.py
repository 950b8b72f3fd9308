#!/usr/bin/env python
"""Masked-LM training throughput of OUR trainer's real train step.

Builds a `pretraining.trainer.Trainer` on synthetic records (random token ids,
vocab 30522, Google static-masking layout + a `Manifest`) written to a temp dir,
then times `trainer._train_loop` (the same `tf.function` `Trainer.train` calls:
tf.data → forward → backward → all-reduce → clip → AdamW) exactly as
`Trainer._train_until` sets it up, minus logging and checkpoints.

Shapes (bench/peers/common.py): S = L4 H256 A4 I1024, batch 32; M = BERT-base
(L12 H768 A12 I3072), batch 8; vocab 30522, seq 128, round(0.15*128) = 19
masked positions per sequence (records carry max_predictions_per_seq = 19, all
weighted, so the head does the same work as the peers'). Dropout 0.1, AdamW.

Prints, last, one line 'RESULT {json}' (the format of `report` in
bench/peers/common.py) with seq_per_s / tok_per_s (median, min, max over the
timed blocks), tokens_per_s, mfu (against --peak-gflops; by default the best
fp32 matmul rate TensorFlow reaches in this process, with the same threads and
oneDNN settings, measured after the timed blocks; with --device gpu, against
--peak-tflops only), peak_rss_mb and, on a GPU, peak_gpu_mib
(`tf.config.experimental.get_memory_info("GPU:0")["peak"]`). With --goal-vs a
seq/s figure, also says how far from the goal the run is.

Examples:
  python -m bench.train_step --config S --jit 1
  python bench/train_step.py --config M --precision bf16 --jit 0 --steps 1 --blocks 3
  python bench/train_step.py --config M --batch 128 --device gpu --threads 0 \
      --precision bf16 --jit 1 --warmup 10 --steps 50 --blocks 4 --peak-tflops 989
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "peers"))
from common import get_config, report, train_flops  # noqa: E402
from pretraining import cpu_env  # noqa: E402

cpu_env.apply_defaults()  # As `python -m pretraining.train` does; override with the env.


def measure_peak_gflops(n=2048, repeats=6):
    """Best fp32 GFLOP/s of an n x n matmul in this process (the MFU reference)."""
    import tensorflow as tf
    a, b = tf.random.uniform((n, n)), tf.random.uniform((n, n))
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))
    matmul().numpy()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul().numpy()
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def write_records(directory, c, num_examples, seed=0, masking="static", num_shards=2):
    """Random-id masked-LM records in the trainer's layout, plus manifest.json.

    Args:
        directory: str. Created if missing.
        c: dict. A `common.get_config` shape (vocab, seq, n_mask).
        num_examples: int. Records to write.
        masking: "static" (masked_lm_* stored) or "dynamic" (word_starts stored).
    """
    import numpy as np

    from data_pipeline import __version__, features, records

    os.makedirs(directory, exist_ok=True)
    V, S, P = c["vocab"], c["seq"], c["n_mask"]
    special = {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    lengths = features.feature_lengths("mlm", masking, S, P)
    rng = np.random.default_rng(seed)
    rows = []
    with records.ShardWriter(directory, num_shards) as writer:
        for _ in range(num_examples):
            ids = rng.integers(1000, V, S)
            ids[0], ids[S // 2], ids[-1] = special["cls"], special["sep"], special["sep"]
            segment = np.zeros(S, np.int64)
            segment[S // 2 + 1:] = 1
            cols = {"input_ids": ids, "input_mask": np.ones(S, np.int64), "segment_ids": segment}
            if masking == "static":
                pos = np.sort(rng.choice(np.arange(1, S - 1), P, replace=False))
                cols.update(masked_lm_positions=pos, masked_lm_ids=ids[pos],
                            masked_lm_weights=np.ones(P, np.float32))
                ids = ids.copy()
                ids[pos] = special["mask"]
                cols["input_ids"] = ids
            else:
                cols["word_starts"] = (rng.random(S) < 0.8).astype(np.int64)
            rows.append(cols)
        writer.write_many(list(records.serialize_batch(
            {name: np.stack([row[name] for row in rows]) for name in lengths},
            lengths)))
        files, counts = writer.close()
    features.Manifest(
        task="mlm", max_seq_length=S, max_predictions_per_seq=P, masking=masking,
        tokenizer_kind="wordpiece", tokenizer_file="synthetic", tokenizer_sha256="0" * 64,
        vocab_size=V, special_ids=special, seed=seed, split="train", num_shards=num_shards,
        shard_files=files, examples_per_shard=counts, num_examples=sum(counts),
        source="bench: random token ids", tool_version=__version__).write(directory)
    return directory


def build_trainer(c, data_dir, model_dir, precision, jit, seed=0):
    from pretraining.config import ExperimentConfig
    from pretraining.trainer import Trainer

    experiment = ExperimentConfig.from_dict({
        "model": {"vocab_size": c["vocab"], "hidden_size": c["hidden"],
                  "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
                  "intermediate_size": c["intermediate"], "max_position_embeddings": 512,
                  "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1},
        "data": {"train_dir": data_dir, "shuffle_buffer": 1024},
        "optimizer": {"name": "adamw", "learning_rate": 1e-4, "warmup_steps": 10,
                      "weight_decay": 0.01},
        "train": {"steps": 1_000_000, "global_batch_size": c["batch"], "seed": seed,
                  "steps_per_loop": 1, "checkpoint_every": 1_000_000, "jit_compile": bool(jit),
                  "mixed_precision": "mixed_bfloat16" if precision == "bf16" else ""},
    })
    return Trainer(experiment, model_dir)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="S", choices=["S", "M"])
    ap.add_argument("--batch", type=int, default=None, help="override the config's batch")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--jit", type=int, default=1, choices=[0, 1], help="train.jit_compile")
    ap.add_argument("--whole-step", type=int, default=1, choices=[0, 1],
                    help="with --jit 1: XLA on the whole step (the trainer's default on one "
                    "device) or on forward+backward only (0)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"],
                    help="gpu: refuse to run unless TensorFlow sees a GPU (it places the "
                    "step there), report its peak memory")
    ap.add_argument("--threads", type=int, default=2,
                    help="TF intra-op threads (as the peers); 0: TensorFlow's default")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps (the first traces)")
    ap.add_argument("--steps", type=int, default=1, help="steps per timed block (one "
                    "_train_loop call each)")
    ap.add_argument("--blocks", type=int, default=12, help="timed blocks")
    ap.add_argument("--examples", type=int, default=0,
                    help="records to write (default: 4 batches' worth, min 128)")
    ap.add_argument("--peak-gflops", type=float, default=0.0,
                    help="MFU reference, GFLOP/s (default: measured here, a 2048^2 fp32 "
                    "matmul, best of 6)")
    ap.add_argument("--peak-tflops", type=float, default=0.0,
                    help="MFU reference in TFLOP/s (e.g. a GPU's dense bf16 peak); "
                    "overrides --peak-gflops")
    ap.add_argument("--goal-vs", type=float, default=0.0,
                    help="a peer's seq/s; with --goal-ratio prints the gap to the goal")
    ap.add_argument("--goal-ratio", type=float, default=1.3)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    for name in ("steps", "blocks"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1. Received: {getattr(args, name)}")
    if args.peak_tflops:
        args.peak_gflops = args.peak_tflops * 1e3

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if args.device == "gpu" and not gpus:
        print(f"error: --device=gpu but TensorFlow {tf.__version__} sees no GPU; fix: install "
              "the package with its gpu extra (pip install '.[gpu]') on a machine with an "
              "NVIDIA GPU, or --device=cpu", file=sys.stderr)
        sys.exit(2)
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import keras
    from absl import logging
    logging.set_verbosity(logging.WARNING)

    c = get_config(args.config, args.batch)
    tag = args.tag or f"ours_{args.config}_{args.precision}_jit{args.jit}"
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as tmp:
        data_dir = write_records(os.path.join(tmp, "train"), c,
                                 args.examples or max(128, 4 * c["batch"]))
        trainer = build_trainer(c, data_dir, os.path.join(tmp, "run"), args.precision, args.jit)
        if args.jit and not args.whole_step:  # the earlier path, for before/after runs
            trainer.whole_step_xla = False
            trainer._compiled_forward_backward = tf.function(
                trainer._forward_backward, jit_compile=True)
        # Exactly what Trainer._train_until sets up before its loop.
        loop = trainer._make_train_loop()
        iterator = iter(trainer._dataset(trainer.train_dir, training=True))

        def run(n):
            out = loop(iterator, tf.constant(n, tf.int32))
            return {k: float(v) for k, v in out.items()}  # waits for the step

        t0 = time.perf_counter()
        first = run(1)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(max(0, args.warmup - 1)):
            run(1)
        warm_s = time.perf_counter() - t0
        blocks = []
        for _ in range(args.blocks):
            t0 = time.perf_counter()
            last = run(args.steps)
            blocks.append(time.perf_counter() - t0)
        num_params = trainer.state.model.count_params()
        ours_flops = trainer.flops_per_step

    gpu_peak_mib = device_name = None
    if args.device == "gpu":
        gpu_peak_mib = round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20, 1)
        device_name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
    elif not args.peak_gflops:
        args.peak_gflops = round(measure_peak_gflops(), 1)
    fl = train_flops(c, "masked")["total"]
    seq = sorted(c["batch"] * args.steps / s for s in blocks)
    median = seq[len(seq) // 2] if len(seq) % 2 else 0.5 * (seq[len(seq) // 2 - 1] + seq[len(seq) // 2])
    extra = dict(
        tokens_per_s=round(median * c["seq"], 1),
        mfu=(round(median / c["batch"] * fl / (args.peak_gflops * 1e9), 4)
             if args.peak_gflops else None),
        peak_rss_mb=None,  # filled below
        device=args.device, device_name=device_name, peak_gpu_mib=gpu_peak_mib,
        precision=args.precision, jit=args.jit, whole_step_xla=trainer.whole_step_xla,
        first_step_s=round(first_s, 2),
        tf_enable_onednn_opts=os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        threads=args.threads, hw_flops_per_step=fl, model_flops_per_step=fl,
        trainer_flops_per_step=ours_flops, peak_gflops=args.peak_gflops,
        first_loss=round(first["loss_sum"] / max(first["weight"], 1.0), 4),
        last_loss=round(last["loss_sum"] / max(last["weight"], 1.0), 4),
        tensorflow=tf.__version__, keras=keras.__version__, params=num_params,
        code=os.path.dirname(os.path.dirname(sys.modules['pretraining.trainer'].__file__)))
    import resource
    extra["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if args.goal_vs:
        ratio = median / args.goal_vs
        extra.update(goal_ratio=args.goal_ratio, ratio_vs_peer=round(ratio, 3),
                     goal_met=ratio >= args.goal_ratio)
        print(f"goal: {args.goal_ratio:.2f}x peer ({args.goal_vs:.2f} seq/s) -> "
              f"{ratio:.2f}x: {'met' if ratio >= args.goal_ratio else f'missed by {(args.goal_ratio / ratio - 1):.0%}'}",
              flush=True)
    report(tag, c, warm_s, blocks, args.steps, extra)


if __name__ == "__main__":
    main()
