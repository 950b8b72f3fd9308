#!/usr/bin/env python
"""Hugging Face BertForMaskedLM training steps on one device (CPU or CUDA GPU),
timed on the shapes of bench/peers/common.py, for `bench/gpu_check.sh`.

The model is built from a BertConfig (no download); random token ids,
round(15% * seq) masked positions per sequence, AdamW, dropout 0.1 as in BERT.

  --head full    the stock path, BertForMaskedLM(..., labels=...): vocabulary
                 logits at every position, the loss on the masked ones
  --head gather  the encoder, then the MLM head at the masked positions only
                 (what original BERT and our trainer do)
  --mode eager | compile   torch.compile of the loss function (forward and
                 backward); AdamW stays eager
  --precision fp32 | bf16  bf16: torch.autocast(bfloat16) around the forward
                 pass, fp32 weights and optimizer (as Keras's mixed_bfloat16)

Prints one line 'RESULT {json}' (bench/peers/common.py's `report`): seq/s and
tokens/s (median, min, max over --blocks blocks of --steps steps, after
--warmup steps), mfu against --peak-tflops (model FLOPs: the masked head) and,
on CUDA, peak_gpu_mib (torch.cuda.max_memory_allocated).

Example: python bench/hf_step.py --config M --batch 128 --device cuda --precision bf16 \\
             --mode compile --peak-tflops 989
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from common import get_config, report, time_blocks, train_flops  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="M", choices=["S", "M"])
    ap.add_argument("--batch", type=int, default=None, help="override the config's batch")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--mode", default="eager", choices=["eager", "compile"])
    ap.add_argument("--head", default="full", choices=["full", "gather"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps after the first")
    ap.add_argument("--steps", type=int, default=50, help="steps per timed block")
    ap.add_argument("--blocks", type=int, default=4, help="timed blocks")
    ap.add_argument("--peak-tflops", type=float, default=0.0,
                    help="the device's peak TFLOP/s for MFU (0: no MFU)")
    args = ap.parse_args(argv)
    for name in ("batch", "steps", "blocks"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name} must be >= 1. Received: {value}")
    if args.warmup < 0 or args.peak_tflops < 0:
        ap.error(f"--warmup and --peak-tflops must be >= 0. Received: --warmup={args.warmup}, "
                 f"--peak-tflops={args.peak_tflops}")
    return args


def main(argv=None):
    args = parse_args(argv)
    import contextlib

    import torch
    import transformers
    from transformers import BertConfig, BertForMaskedLM

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"error: --device=cuda but torch {torch.__version__} sees no CUDA GPU; fix: a "
              "CUDA build of torch on a GPU machine, or --device=cpu", file=sys.stderr)
        sys.exit(2)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    c = get_config(args.config, args.batch)
    B, S, P, V = c["batch"], c["seq"], c["n_mask"], c["vocab"]
    config = BertConfig(vocab_size=V, hidden_size=c["hidden"], num_hidden_layers=c["layers"],
                        num_attention_heads=c["heads"], intermediate_size=c["intermediate"],
                        max_position_embeddings=512)
    model = BertForMaskedLM(config).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    ids = torch.randint(1000, V, (B, S), device=device)
    token_types = torch.zeros(B, S, dtype=torch.long, device=device)
    attention_mask = torch.ones(B, S, dtype=torch.long, device=device)
    positions = torch.stack([torch.randperm(S)[:P].sort().values for _ in range(B)]).to(device)
    targets = torch.randint(1000, V, (B, P), device=device)
    labels = torch.full((B, S), -100, dtype=torch.long, device=device)
    labels.scatter_(1, positions, targets)
    rows = torch.arange(B, device=device).unsqueeze(1).expand(B, P)

    def autocast():
        if args.precision == "bf16":
            return torch.autocast(device_type=args.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    if args.head == "full":
        def loss_fn(ids, token_types, attention_mask):
            with autocast():
                return model(input_ids=ids, token_type_ids=token_types,
                             attention_mask=attention_mask, labels=labels).loss
    else:
        def loss_fn(ids, token_types, attention_mask):
            with autocast():
                hidden = model.bert(input_ids=ids, token_type_ids=token_types,
                                    attention_mask=attention_mask).last_hidden_state
                logits = model.cls(hidden[rows, positions])  # (B, P, V)
            return torch.nn.functional.cross_entropy(logits.float().reshape(-1, V),
                                                     targets.reshape(-1))

    if args.mode == "compile":
        loss_fn = torch.compile(loss_fn)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(ids, token_types, attention_mask)
        loss.backward()
        optimizer.step()
        return loss

    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    first_loss = step().item()  # the first step (torch.compile's compilation included)
    first_s = time.perf_counter() - t0
    warm_s, blocks = time_blocks(step, args.warmup, args.steps, args.blocks, sync=sync)
    last_loss = step().item()
    model_flops = train_flops(c, "masked")["total"]
    seq = sorted(B * args.steps / s for s in blocks)
    median = seq[len(seq) // 2] if len(seq) % 2 else 0.5 * (seq[len(seq) // 2 - 1]
                                                            + seq[len(seq) // 2])
    extra = dict(
        device=args.device,
        device_name=torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        precision=args.precision, mode=args.mode, head=args.head,
        first_step_s=round(first_s, 2), first_loss=round(first_loss, 4),
        last_loss=round(last_loss, 4),
        hw_flops_per_step=train_flops(c, args.head if args.head == "full" else "masked")["total"],
        model_flops_per_step=model_flops, peak_tflops=args.peak_tflops or None,
        mfu=(round(median / B * model_flops / (args.peak_tflops * 1e12), 4)
             if args.peak_tflops else None),
        peak_gpu_mib=(round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
                      if args.device == "cuda" else None),
        torch=torch.__version__, transformers=transformers.__version__,
        attn_impl=getattr(model.config, "_attn_implementation", None))
    report(f"hf_{args.mode}_{args.head}_{args.precision}_{args.device}", c, warm_s, blocks,
           args.steps, extra)


if __name__ == "__main__":
    main()
