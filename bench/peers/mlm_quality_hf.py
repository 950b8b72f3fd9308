#!/usr/bin/env python
"""Reference masked-LM training run with Hugging Face transformers (PyTorch, CPU) on
batches given as NumPy arrays, with held-out masked-LM accuracy at intervals.

The peer side of bench/time_to_quality.py: both frameworks train on the same
batches (same order, same static masks) and are evaluated on the same eval split.

Inputs (np.savez files, Google's feature names; other arrays are ignored):
  --train_npz: arrays of shape [steps, batch, ...]: input_ids, input_mask,
               segment_ids (each [steps, B, L]), masked_lm_positions,
               masked_lm_ids, masked_lm_weights (each [steps, B, P]).
               Step i trains on batch i; --steps defaults to all of them
               (`python -m pretraining.export_batches` writes this layout).
  --eval_npz : the same features shaped [N, ...] (no step axis).
Model: BertForMaskedLM from a BertConfig built from the flags (no download),
hidden_act gelu_new (Google's tanh GELU), loss on the masked positions only
(gather, as Google does), torch.optim.AdamW (betas 0.9/0.999, eps 1e-6, weight
decay on matrices only: LayerNorm and biases excluded, as Google does), linear
warmup then linear decay to 0 (get_linear_schedule_with_warmup), global-norm clip.
--init_hf starts from an HF directory instead (e.g. the other framework's initial
weights exported to HF format), checked against the flags.

Time accounting: the clock starts just before the first step; evaluations are
NOT counted (wall_s and cpu_s are training only: the time spent evaluating,
eval_wall_s, is subtracted), as bench/time_to_quality.py does on our side.
cpu_s is this process's CPU time (time.process_time: every thread).

Writes OUT/metrics.jsonl (train windows and evals, each with the training wall_s
and cpu_s so far) and OUT/summary.json; prints a 'RESULT {json}' line last.

Example:
  python mlm_quality_hf.py --train_npz t.npz --eval_npz e.npz --out runs/hf_s0 \
      --vocab 8000 --layers 2 --hidden 128 --heads 2 --inter 512 --max_pos 128 \
      --lr 3e-3 --warmup 100
"""
import argparse
import json
import os
import time

import numpy as np

FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
            "masked_lm_ids", "masked_lm_weights")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_npz", required=True)
    p.add_argument("--eval_npz", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init_hf", default="")
    p.add_argument("--steps", type=int, default=0, help="0: every batch in --train_npz")
    p.add_argument("--stop_at", type=int, default=0,
                   help="stop after this many steps of the --steps schedule (0: run it all)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0, help="0: no clipping")
    p.add_argument("--log_every", type=int, default=100)
    p.add_argument("--eval_every", type=int, default=500, help="0: at the end only")
    p.add_argument("--eval_at_start", type=int, default=1, help="1: also evaluate before step 1")
    p.add_argument("--eval_batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--inter", type=int, default=512)
    p.add_argument("--max_pos", type=int, default=512)
    p.add_argument("--type_vocab", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    a = p.parse_args()

    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import BertConfig, BertForMaskedLM, get_linear_schedule_with_warmup

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    cfg = BertConfig(vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers,
                     num_attention_heads=a.heads, intermediate_size=a.inter, hidden_act="gelu_new",
                     hidden_dropout_prob=a.dropout, attention_probs_dropout_prob=a.dropout,
                     max_position_embeddings=a.max_pos, type_vocab_size=a.type_vocab,
                     initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0)
    if a.init_hf:
        model = BertForMaskedLM.from_pretrained(a.init_hf)
        for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "vocab_size", "hidden_act", "max_position_embeddings", "type_vocab_size"):
            if getattr(model.config, k) != getattr(cfg, k):
                raise SystemExit(f"--init_hf {a.init_hf}: {k}={getattr(model.config, k)!r}, flags say {getattr(cfg, k)!r}")
    else:
        model = BertForMaskedLM(cfg)
    H, V = cfg.hidden_size, cfg.vocab_size

    def tensors(npz, n=None):
        d = np.load(npz)
        missing = [k for k in FEATURES if k not in d.files]
        if missing:
            raise SystemExit(f"{npz}: no {missing} (has {d.files}); write it with "
                             "python -m pretraining.export_batches")
        return {k: torch.from_numpy((d[k][:n] if n else d[k]).astype(
            np.float32 if k == "masked_lm_weights" else np.int64)) for k in FEATURES}

    train = tensors(a.train_npz, a.steps or None)
    evals = tensors(a.eval_npz)
    steps = train["input_ids"].shape[0]
    batch = train["input_ids"].shape[1]
    if a.steps and steps < a.steps:
        raise SystemExit(f"--steps {a.steps}: {a.train_npz} holds {steps} batches only")

    def forward(b):
        seq = model.bert(input_ids=b["input_ids"], attention_mask=b["input_mask"],
                         token_type_ids=b["segment_ids"]).last_hidden_state
        pos = b["masked_lm_positions"]
        gathered = torch.gather(seq, 1, pos.unsqueeze(-1).expand(-1, -1, H))  # (B, P, H)
        logits = model.cls(gathered).float()                                  # (B, P, V)
        ce = F.cross_entropy(logits.reshape(-1, V), b["masked_lm_ids"].reshape(-1), reduction="none")
        w = b["masked_lm_weights"].reshape(-1)
        correct = (logits.argmax(-1).reshape(-1) == b["masked_lm_ids"].reshape(-1)).float()
        return (ce * w).sum(), (correct * w).sum(), w.sum()

    decay = [q for q in model.parameters() if q.ndim >= 2]
    no_decay = [q for q in model.parameters() if q.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-6)
    sched = get_linear_schedule_with_warmup(opt, a.warmup, steps)
    params = list(model.parameters())

    @torch.no_grad()
    def evaluate():
        model.eval()
        s = np.zeros(3)
        n = evals["input_ids"].shape[0]
        for i in range(0, n, a.eval_batch):
            s += [float(x) for x in forward({k: v[i:i + a.eval_batch] for k, v in evals.items()})]
        model.train()
        return {"eval_loss": s[0] / s[2], "eval_masked_lm_accuracy": s[1] / s[2], "eval_predictions": int(s[2])}

    log = open(os.path.join(a.out, "metrics.jsonl"), "w")
    excluded = np.zeros(2)  # wall, cpu seconds spent evaluating

    def clock():
        return time.time() - t0 - excluded[0], time.process_time() - c0 - excluded[1]

    def emit(rec, at=None):
        wall, cpu = at or clock()
        rec.update(wall_s=round(wall, 3), cpu_s=round(cpu, 3))
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()

    def timed_eval(step):
        at = clock()
        w0, c0_eval = time.time(), time.process_time()
        rec = {"step": step, **evaluate()}
        excluded[:] += [time.time() - w0, time.process_time() - c0_eval]
        emit(rec, at)
        return rec

    model.train()
    win = np.zeros(3)
    t0, c0 = time.time(), time.process_time()
    rec = timed_eval(0) if a.eval_at_start else {}
    for step in range(min(a.stop_at, steps) if a.stop_at else steps):
        lsum, csum, wsum = forward({k: v[step] for k, v in train.items()})
        loss = lsum / wsum.clamp(min=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.clip)
        lr_used = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        win += [float(lsum), float(csum), float(wsum)]
        s = step + 1
        last = s == steps or s == a.stop_at
        if s % a.log_every == 0 or last:
            emit({"step": s, "loss": win[0] / win[2], "masked_lm_accuracy": win[1] / win[2],
                  "learning_rate": lr_used})
            win[:] = 0
        if (a.eval_every and s % a.eval_every == 0) or last:
            rec = timed_eval(s)
    summary = {**rec, "eval_wall_s": round(float(excluded[0]), 3), "batch": batch, "steps": steps,
               "seed": a.seed, "lr": a.lr, "warmup": a.warmup, "threads": a.threads,
               "torch": torch.__version__, "transformers": transformers.__version__}
    tmp = os.path.join(a.out, "summary.json.tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(tmp, os.path.join(a.out, "summary.json"))
    print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
    main()
