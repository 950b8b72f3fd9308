#!/usr/bin/env bash
# Create the peer venvs under ${PEERS:-/tmp/peers} (never inside the repo's tracked tree):
#   torch : torch==2.13.0 (CPU wheel; plain 'torch' pulls a multi-GB CUDA build), transformers
#   kh    : tensorflow-cpu==2.21.0 + keras-hub
#   hf-data: tokenizers + transformers + numpy, no torch (bench/data_build.py's HF side:
#           DataCollatorForLanguageModeling(return_tensors="np") needs no torch)
# Idempotent: re-running only installs what is missing.
# Usage: bash bench/peers/setup.sh [torch|kh|hf-data]...   (default: torch kh)
set -euo pipefail
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then sed -n 2,8p "$0"; exit 0; fi
P=${PEERS:-/tmp/peers}
mkdir -p "$P"
which=("$@"); [[ ${#which[@]} -gt 0 ]] || which=(torch kh)
for w in "${which[@]}"; do
  case $w in
    torch)
      [[ -x $P/torch/bin/python ]] || python3 -m venv "$P/torch"
      "$P/torch/bin/python" -c 'import torch, transformers' 2>/dev/null || {
        "$P/torch/bin/pip" install -q torch==2.13.0
        "$P/torch/bin/pip" install -q transformers safetensors tokenizers numpy; } ;;
    kh)
      [[ -x $P/kh/bin/python ]] || python3 -m venv "$P/kh"
      "$P/kh/bin/python" -c 'import tensorflow, keras_hub' 2>/dev/null || \
        "$P/kh/bin/pip" install -q tensorflow-cpu==2.21.0 keras-hub ;;
    hf-data)
      [[ -x $P/hf-data/bin/python ]] || python3 -m venv "$P/hf-data"
      "$P/hf-data/bin/python" -c 'import tokenizers, transformers' 2>/dev/null || \
        "$P/hf-data/bin/pip" install -q tokenizers transformers numpy ;;
    *) echo "unknown venv $w" >&2; exit 2 ;;
  esac
done
du -sh "$P"/* 2>/dev/null || true
