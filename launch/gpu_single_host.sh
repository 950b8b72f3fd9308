#!/usr/bin/env bash
# Pretrain on every visible GPU of one machine (MirroredStrategy).
#
#   export MODEL_DIR=runs/bert_base_8gpu TRAIN_DIR=/data/seq128/train EVAL_DIR=/data/seq128/eval
#   launch/gpu_single_host.sh --xla --mixed_precision=mixed_float16
#   launch/gpu_single_host.sh --gpus=0,1 -- --override=train.steps=1000
#
# Every command is printed before it runs; --dry-run prints it only.
# Install first: pip install -e ".[gpu]" (or make install TF_EXTRA=gpu).
set -euo pipefail

# ---- Settings: each can be overridden from the environment. ----------------
EXPERIMENT="${EXPERIMENT:-configs/experiments/bert_base_8gpu_lamb.json}"
MODEL_DIR="${MODEL_DIR:-}"            # run directory (local path or gs://)
TRAIN_DIR="${TRAIN_DIR:-}"            # records for data.train_dir ("" = the experiment's)
EVAL_DIR="${EVAL_DIR:-}"              # records for data.eval_dir ("" = the experiment's)
GPUS="${GPUS:-}"                      # CUDA_VISIBLE_DEVICES ("" = all visible GPUs)
PYTHON="${PYTHON:-}"                  # default: .venv/bin/python if present, else python3
LOG_FILE="${LOG_FILE:-}"              # also copy the output here (tee), e.g. logs/train.log
# -----------------------------------------------------------------------------

SCRIPT="$(basename "$0")"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DRY_RUN=0
XLA=0
MIXED_PRECISION=""
EXTRA=()

usage() {
  cat <<EOF
Usage: $SCRIPT [--dry-run] [--xla] [--mixed_precision=POLICY] [--gpus=0,1,...] [-- TRAIN_FLAGS...]

Runs python -m pretraining.train --strategy=mirrored on all visible GPUs
(one replica per GPU) in the foreground, from the repository root.

Options:
  --dry-run                 print the command without running it, then exit 0
  --xla                     XLA-compile the train step (--override=train.jit_compile=true)
  --mixed_precision=POLICY  mixed_float16 (V100, T4 …) or mixed_bfloat16 (A100, H100 …)
                            (--override=train.mixed_precision=POLICY)
  --gpus=LIST               only these GPUs (sets CUDA_VISIBLE_DEVICES)
  -h, --help                this help
  -- TRAIN_FLAGS            passed to the trainer, e.g. -- --override=train.steps=1000
                            --override=train.global_batch_size=4096 (repeatable)

Environment (current value):
  EXPERIMENT=$EXPERIMENT
  MODEL_DIR=$MODEL_DIR (required)
  TRAIN_DIR=$TRAIN_DIR EVAL_DIR=$EVAL_DIR (override data.train_dir / data.eval_dir)
  GPUS=$GPUS PYTHON=$PYTHON LOG_FILE=$LOG_FILE

Re-running the same command resumes from the latest checkpoint in MODEL_DIR;
after SIGTERM the trainer checkpoints and exits with status 75.
EOF
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --xla) XLA=1 ;;
    --mixed_precision=*) MIXED_PRECISION="${1#*=}" ;;
    --gpus=*) GPUS="${1#*=}" ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument: $(printf '%q' "$1") (trainer flags go after --; see --help)" ;;
  esac
  shift
done

if [[ -z "$MODEL_DIR" ]]; then
  die "MODEL_DIR is not set: export MODEL_DIR=runs/bert_base_8gpu (or gs://my-bucket/runs/...)"
fi
case "$MIXED_PRECISION" in
  "" | mixed_float16 | mixed_bfloat16) ;;
  *) die "--mixed_precision must be mixed_float16 or mixed_bfloat16. Received: $(printf '%q' "$MIXED_PRECISION")" ;;
esac
if [[ -n "$GPUS" && ! "$GPUS" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  die "--gpus must be a comma-separated list of GPU indices, e.g. 0,1,2,3. Received: $(printf '%q' "$GPUS")"
fi
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
  else
    PYTHON=python3
  fi
fi

cmd=("$PYTHON" -m pretraining.train "--experiment=$EXPERIMENT" "--model_dir=$MODEL_DIR"
  --strategy=mirrored)
if [[ -n "$TRAIN_DIR" ]]; then
  cmd+=("--override=data.train_dir=$TRAIN_DIR")
fi
if [[ -n "$EVAL_DIR" ]]; then
  cmd+=("--override=data.eval_dir=$EVAL_DIR")
fi
if [[ "$XLA" == 1 ]]; then
  cmd+=(--override=train.jit_compile=true)
fi
if [[ -n "$MIXED_PRECISION" ]]; then
  cmd+=("--override=train.mixed_precision=$MIXED_PRECISION")
fi
cmd+=("${EXTRA[@]}")
if [[ -n "$GPUS" ]]; then
  cmd=(env "CUDA_VISIBLE_DEVICES=$GPUS" "${cmd[@]}")
fi

cd "$REPO_ROOT"
quoted=""
if [[ -n "$LOG_FILE" ]]; then
  run mkdir -p "$(dirname "$LOG_FILE")"
  printf -v quoted '%q ' "${cmd[@]}"
  printf '+ %s2>&1 | tee -a %q\n' "$quoted" "$LOG_FILE"
  if [[ "$DRY_RUN" == 0 ]]; then
    "${cmd[@]}" 2>&1 | tee -a "$LOG_FILE"
  fi
else
  run "${cmd[@]}"
fi
