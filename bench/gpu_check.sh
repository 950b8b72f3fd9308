#!/usr/bin/env bash
# GPU readiness check for a machine with an NVIDIA GPU; run from the repository root.
#   1. a venv with the package's gpu extra (tensorflow[and-cuda]) and pytest, and a
#      second venv with torch (CUDA build) and transformers for the peer (two venvs:
#      the two wheels pin different nvidia-* CUDA libraries)
#   2. the tests with the GPU visible (TESTS: a quick subset by default, "all" for all)
#   3. BERT-base (config M, sequence 128) in mixed bf16 for WARMUP + STEPS x BLOCKS
#      steps (~200): our trainer's step (mixed_bfloat16, XLA on the whole step), then
#      Hugging Face BertForMaskedLM eager and torch.compile on the same shapes
#   4. a table: seq/s, MFU against the GPU's dense bf16 peak, peak GPU memory
# About 6-8 minutes once the wheels are downloaded (the first install downloads ~6 GB).
#
# Usage: bash bench/gpu_check.sh [--dry-run]
#   --dry-run  print the commands without running them (needs no GPU)
# Settings (environment variables, defaults below): PYTHON VENV PEER_VENV TORCH_SPEC
# TRANSFORMERS_SPEC TESTS BATCH WARMUP STEPS BLOCKS GPU_NAME PEAK_TFLOPS OUT_DIR.
# PEAK_TFLOPS overrides the table (dense bf16 TFLOP/s, no sparsity) chosen by GPU_NAME.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-runs/gpu_check/venv}"  # under runs/: ignored by git, removed by make clean
PEER_VENV="${PEER_VENV:-runs/gpu_check/venv-peer}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TRANSFORMERS_SPEC="${TRANSFORMERS_SPEC:-transformers}"
QUICK_TESTS="tests/pretraining/test_model.py tests/pretraining/test_model_variants.py"
QUICK_TESTS+=" tests/pretraining/test_tasks.py tests/pretraining/test_trainer.py"
QUICK_TESTS+=" tests/pretraining/test_generation.py"
TESTS="${TESTS:-$QUICK_TESTS}"  # "all": the whole suite
BATCH="${BATCH:-128}"
WARMUP="${WARMUP:-10}"
STEPS="${STEPS:-50}"
BLOCKS="${BLOCKS:-4}"
GPU_NAME="${GPU_NAME:-}"
PEAK_TFLOPS="${PEAK_TFLOPS:-}"
OUT_DIR="${OUT_DIR:-runs/gpu_check}"

usage() { sed -n 2,17p "$0"; }

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument '$arg'; usage: bash bench/gpu_check.sh [--dry-run]" >&2
       exit 2 ;;
  esac
done
for name in BATCH WARMUP STEPS BLOCKS; do
  if ! [[ "${!name}" =~ ^[0-9]+$ ]] || { [[ "$name" != WARMUP ]] && (( ${!name} < 1 )); }; then
    echo "error: $name must be a whole number (>= 1 except WARMUP). Received: $name='${!name}'" >&2
    exit 2
  fi
done
if [[ -n "$PEAK_TFLOPS" ]] && ! [[ "$PEAK_TFLOPS" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "error: PEAK_TFLOPS must be a number of TFLOP/s. Received: PEAK_TFLOPS='$PEAK_TFLOPS'" >&2
  exit 2
fi

# Prints a command, quoted so it can be pasted, then runs it (not with --dry-run).
quoted() {
  local line
  line="$(printf '%q ' "$@")"
  echo "${line% }"
}

run() {
  echo "+ $(quoted "$@")"
  if (( ! DRY_RUN )); then "$@"; fi
}

# As run, and appends the output to $LOG (the RESULT lines the summary reads).
run_logged() {
  echo "+ $(quoted "$@") 2>&1 | tee -a $(quoted "$LOG")"
  if (( ! DRY_RUN )); then "$@" 2>&1 | tee -a "$LOG"; fi
}

# Dense bf16 tensor-core peak, TFLOP/s (vendor data sheets, without sparsity).
peak_for() {
  case "$1" in
    *H100*PCIe*) echo 756 ;;
    *H100*|*H200*) echo 989 ;;
    *B200*) echo 2250 ;;
    *A100*) echo 312 ;;
    *L40S*) echo 362 ;;
    *L40*) echo 181 ;;
    *L4*) echo 121 ;;
    *A10) echo 125 ;;
    *) echo "" ;;
  esac
}

stage() {
  echo
  echo "== $1 (${SECONDS}s so far)"
}

if (( ! DRY_RUN )) && ! command -v nvidia-smi > /dev/null; then
  echo "error: nvidia-smi not found: this check needs a machine with an NVIDIA GPU and its" \
       "driver (bash bench/gpu_check.sh --dry-run prints the commands)" >&2
  exit 2
fi

stage "GPU"
run nvidia-smi
if [[ -z "$GPU_NAME" ]]; then
  echo "+ nvidia-smi --query-gpu=name --format=csv,noheader"
  if (( DRY_RUN )); then
    GPU_NAME="(nvidia-smi's GPU name)"
  else
    GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
  fi
fi
PEAK="${PEAK_TFLOPS:-$(peak_for "$GPU_NAME")}"
if [[ -z "$PEAK" ]]; then
  echo "warning: no bf16 peak known for '$GPU_NAME': MFU not computed; set PEAK_TFLOPS=..." >&2
  PEAK=0
fi
echo "GPU: $GPU_NAME; bf16 peak for MFU: $PEAK TFLOP/s"

stage "install"
run "$PYTHON" -m venv "$VENV"
run "$VENV/bin/python" -m pip install --quiet --upgrade pip
run "$VENV/bin/python" -m pip install --quiet -e ".[gpu]" pytest
run "$VENV/bin/python" -m data_pipeline.native \
  || echo "warning: the dynamic-masking kernel did not build; dynamic masking uses TF ops"
run "$VENV/bin/python" -c "import sys, tensorflow as tf; gpus = tf.config.list_physical_devices('GPU'); print(tf.__version__, gpus); sys.exit(0 if gpus else 'TensorFlow sees no GPU')"
run "$PYTHON" -m venv "$PEER_VENV"
run "$PEER_VENV/bin/python" -m pip install --quiet --upgrade pip
run "$PEER_VENV/bin/python" -m pip install --quiet "$TORCH_SPEC" "$TRANSFORMERS_SPEC"
run "$PEER_VENV/bin/python" -c "import sys, torch; print(torch.__version__, torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA GPU')"

stage "tests (GPU visible)"
test_args=()
if [[ "$TESTS" != all ]]; then read -r -a test_args <<< "$TESTS"; fi
failed=()  # what failed, reported at the end; the next stage still runs
if ! run "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${test_args[@]}"; then
  failed+=(tests)
  echo "warning: tests failed (above); the benchmark runs anyway" >&2
fi

stage "BERT-base, sequence 128, bf16: ours vs Hugging Face"
run mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check-$(date -u +%Y%m%dT%H%M%SZ).log"
shape=(--config M --batch "$BATCH" --warmup "$WARMUP" --steps "$STEPS" --blocks "$BLOCKS"
       --peak-tflops "$PEAK")
run_logged "$VENV/bin/python" bench/train_step.py "${shape[@]}" --device gpu --threads 0 \
  --precision bf16 --jit 1 --whole-step 1 --tag ours_M_mixed_bfloat16_xla || failed+=(ours)
run_logged "$PEER_VENV/bin/python" bench/hf_step.py "${shape[@]}" --device cuda \
  --precision bf16 --mode eager --head full || failed+=(hf_eager)
run_logged "$PEER_VENV/bin/python" bench/hf_step.py "${shape[@]}" --device cuda \
  --precision bf16 --mode compile --head full || failed+=(hf_compile)

stage "summary"
echo "+ summary of the RESULT lines in $LOG"
if (( ! DRY_RUN )); then
  "$VENV/bin/python" - "$LOG" "$GPU_NAME" "$PEAK" <<'PY'
import json
import sys

log, gpu, peak = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = [json.loads(line[len("RESULT "):]) for line in open(log, encoding="utf-8")
        if line.startswith("RESULT ")]
print(f"{gpu}, batch {rows[0]['batch'] if rows else '?'} x 128, bf16 peak {peak:g} TFLOP/s")
print(f"{'run':36s} {'seq/s':>9s} {'MFU':>7s} {'peak GPU MiB':>13s} {'first step s':>13s}")
for r in rows:
    mfu = f"{r['mfu']:.1%}" if r.get("mfu") else "n/a"
    mem = r.get("peak_gpu_mib")
    print(f"{r['tag']:36s} {r['seq_per_s']['median']:9.1f} {mfu:>7s} "
          f"{mem if mem is not None else 'n/a':>13} {r.get('first_step_s', 'n/a'):>13}")
print(f"RESULT lines: {log}")
PY
fi
echo "total: ${SECONDS}s"
if (( ${#failed[@]} )); then
  echo "error: failed: ${failed[*]} (see above)" >&2
  exit 1
fi
