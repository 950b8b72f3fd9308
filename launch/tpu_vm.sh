#!/usr/bin/env bash
# Pretrain on a Cloud TPU VM (one host such as v3-8 / v4-8, or a pod slice).
#
#   export PROJECT=my-gcp-project ZONE=us-central2-b BUCKET=my-bucket
#   launch/tpu_vm.sh create            # a TPU VM (add --spot for a Spot VM)
#   launch/tpu_vm.sh setup             # copy this repository, pip install -e ".[tpu]" on every worker
#   launch/tpu_vm.sh run               # start the trainer, detached, on every worker
#   launch/tpu_vm.sh status | logs | stop | delete
#
# Every command is printed before it runs; --dry-run prints them only.
# See README.md, section Pretraining at scale for the whole walk-through.
set -euo pipefail

# ---- Settings: each can be overridden from the environment. ----------------
PROJECT="${PROJECT:-}"                                   # GCP project id
ZONE="${ZONE:-}"                                         # e.g. us-central2-b (v4), europe-west4-a (v3)
TPU_NAME="${TPU_NAME:-bert-pretraining}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"             # v3-8, v4-8: one host; v4-32 …: a pod slice
RUNTIME_VERSION="${RUNTIME_VERSION:-auto}"               # auto: the base image of the TPU generation
#   (v2-v4: tpu-ubuntu2204-base, v5e: v2-alpha-tpuv5-lite, v5p: v2-alpha-tpuv5,
#   v6e: v2-alpha-tpuv6e); TensorFlow comes from pip (tensorflow-tpu 2.20).
BUCKET="${BUCKET:-}"                                     # gs://BUCKET holds data and runs
EXPERIMENT="${EXPERIMENT:-configs/experiments/bert_base_phase1_tpu.json}"
RUN_NAME="${RUN_NAME:-bert_base_phase1}"
MODEL_DIR="${MODEL_DIR:-}"                               # default gs://$BUCKET/runs/$RUN_NAME
DATA_URL="${DATA_URL:-}"                                 # records: default gs://$BUCKET/data/seq128
TRAIN_DIR="${TRAIN_DIR:-}"                               # default $DATA_URL/train
EVAL_DIR="${EVAL_DIR:-}"                                 # default $DATA_URL/eval
INIT_CHECKPOINT="${INIT_CHECKPOINT:-}"                   # phase 2: gs://$BUCKET/runs/bert_base_phase1
LOCAL_DATA_DIR="${LOCAL_DATA_DIR:-/tmp/bert-data}"       # `stage`: copy on each worker's disk
TPU_ADDRESS="${TPU_ADDRESS:-auto}"                       # --tpu=: auto = local on one host, $TPU_NAME on a pod
RUN_WORKERS="${RUN_WORKERS:-all}"                        # workers that start the trainer (all, or 0)
REMOTE_DIR="${REMOTE_DIR:-bert-pretraining}"             # on the VMs, relative to $HOME
LIBTPU_INDEX="${LIBTPU_INDEX:-}"                         # pip -f for another libtpu (default: PyPI's)
LOG_LINES="${LOG_LINES:-100}"
LOG_WORKER="${LOG_WORKER:-0}"
# -----------------------------------------------------------------------------

SCRIPT="$(basename "$0")"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DRY_RUN=0
CAPACITY=""     # "", --spot or --preemptible
FOLLOW=0

usage() {
  cat <<EOF
Usage: $SCRIPT [--dry-run] [--spot|--preemptible] COMMAND [-- TRAIN_FLAGS...]

Commands:
  create   gcloud compute tpus tpu-vm create \$TPU_NAME (\$ACCELERATOR_TYPE, \$RUNTIME_VERSION)
  setup    copy this repository to every worker, then pip install -e ".[tpu]" there
  stage    copy \$DATA_URL to \$LOCAL_DATA_DIR on every worker (if the data must be local)
  run      start python -m pretraining.train, detached (nohup setsid), on \$RUN_WORKERS;
           each worker logs to ~/\$REMOTE_DIR/logs/train-HOSTNAME.log.
           TRAIN_FLAGS after -- are passed on, e.g. -- --override=train.steps=1000
  status   the TPU's state and whether the trainer runs on each worker
  logs     the last \$LOG_LINES lines of worker \$LOG_WORKER's log (--follow to follow)
  stop     SIGTERM the trainer on every worker: it writes a checkpoint and exits (75)
  delete   delete the TPU VM (billing stops; checkpoints stay in \$MODEL_DIR)

Options:
  --dry-run        print every command (gcloud …) without running it, then exit 0
  --spot           create a Spot VM (cheaper, can be preempted at any time)
  --preemptible    create a preemptible VM (older form of --spot)
  --follow         with logs: keep following the log (tail -F)
  -h, --help       this help

Environment (current value):
  PROJECT=$PROJECT ZONE=$ZONE TPU_NAME=$TPU_NAME
  ACCELERATOR_TYPE=$ACCELERATOR_TYPE RUNTIME_VERSION=$RUNTIME_VERSION BUCKET=$BUCKET
  EXPERIMENT=$EXPERIMENT RUN_NAME=$RUN_NAME
  MODEL_DIR (default gs://\$BUCKET/runs/\$RUN_NAME), DATA_URL (default
  gs://\$BUCKET/data/seq128), TRAIN_DIR, EVAL_DIR (default \$DATA_URL/train, /eval),
  INIT_CHECKPOINT (train.init_checkpoint), TPU_ADDRESS=$TPU_ADDRESS, RUN_WORKERS=$RUN_WORKERS

TPU resolution: on one host (ACCELERATOR_TYPE ending in -1 … -8) the trainer
gets --tpu=local; on a pod slice --tpu=\$TPU_NAME, started on every worker
(RUN_WORKERS=all). Set TPU_ADDRESS to force either.

Preemption: the trainer resumes from \$MODEL_DIR by itself. After a Spot VM is
preempted: $SCRIPT delete; $SCRIPT --spot create; $SCRIPT setup; $SCRIPT run
(same MODEL_DIR, same experiment).
EOF
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Quotes each argument for the remote shell (gcloud … ssh --command=…).
remote_quote() {
  local quoted
  printf -v quoted '%q ' "$@"
  printf '%s' "${quoted% }"
}

require() {
  local name example
  for name in "$@"; do
    if [[ -z "${!name:-}" ]]; then
      case "$name" in
        PROJECT) example="my-gcp-project" ;;
        ZONE) example="us-central2-b" ;;
        BUCKET) example="my-bucket (without gs://)" ;;
        TPU_NAME) example="bert-pretraining" ;;
        *) example="..." ;;
      esac
      die "$name is not set: export $name=$example"
    fi
  done
}

gcloud_tpu() {
  local verb="$1"
  shift
  run gcloud compute tpus tpu-vm "$verb" "$TPU_NAME" "--project=$PROJECT" "--zone=$ZONE" "$@"
}

# The TPU software version to create the VM with: the generation's base image
# (Ubuntu + the TPU driver, no framework), as Cloud TPU's runtime table gives.
runtime_version() {
  if [[ "$RUNTIME_VERSION" != auto ]]; then
    printf '%s' "$RUNTIME_VERSION"
    return
  fi
  case "$ACCELERATOR_TYPE" in
    v2-*|v3-*|v4-*) printf 'tpu-ubuntu2204-base' ;;
    v5litepod-*|v5e-*) printf 'v2-alpha-tpuv5-lite' ;;
    v5p-*) printf 'v2-alpha-tpuv5' ;;
    v6e-*) printf 'v2-alpha-tpuv6e' ;;
    *) die "No default RUNTIME_VERSION for ACCELERATOR_TYPE=$ACCELERATOR_TYPE: set RUNTIME_VERSION (a TPU software version, e.g. tpu-ubuntu2204-base)" ;;
  esac
}

single_host() {
  local chips="${ACCELERATOR_TYPE##*-}"
  [[ "$chips" =~ ^[0-9]+$ ]] || die "ACCELERATOR_TYPE must end in a number (v4-8, v4-32 …). Received: ACCELERATOR_TYPE=$ACCELERATOR_TYPE"
  ((chips <= 8))
}

tpu_address() {
  if [[ "$TPU_ADDRESS" != auto ]]; then
    printf '%s' "$TPU_ADDRESS"
  elif single_host; then
    printf 'local'
  else
    printf '%s' "$TPU_NAME"
  fi
}

cmd_create() {
  local version
  version="$(runtime_version)"
  local args=("--accelerator-type=$ACCELERATOR_TYPE" "--version=$version")
  if [[ -n "$CAPACITY" ]]; then
    args+=("$CAPACITY")
  fi
  gcloud_tpu create "${args[@]}"
}

cmd_setup() {
  local tarball="${TMPDIR:-/tmp}/bert-pretraining-src.tar.gz"
  run tar -czf "$tarball" --exclude=./.venv --exclude=./.git --exclude=./runs \
    --exclude=./.pytest_cache -C "$REPO_ROOT" .
  run gcloud compute tpus tpu-vm scp "$tarball" "$TPU_NAME:bert-pretraining-src.tar.gz" \
    "--project=$PROJECT" "--zone=$ZONE" --worker=all
  local dir find_links=""
  dir="$(remote_quote "$REMOTE_DIR")"
  if [[ -n "$LIBTPU_INDEX" ]]; then
    find_links=" -f $(remote_quote "$LIBTPU_INDEX")"
  fi
  gcloud_tpu ssh --worker=all "--command=set -e; mkdir -p $dir; tar -xzf bert-pretraining-src.tar.gz -C $dir; cd $dir; (python3 -m venv .venv || (sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv && python3 -m venv .venv)); .venv/bin/pip install -q --upgrade pip; .venv/bin/pip install -q -e '.[tpu]'$find_links; (.venv/bin/python -m data_pipeline.native || echo 'the dynamic-masking kernel did not build: TensorFlow ops are used'); .venv/bin/python -c 'import tensorflow as tf; print(tf.__version__)'"
}

cmd_stage() {
  require BUCKET
  local url="${DATA_URL:-gs://$BUCKET/data/seq128}"
  gcloud_tpu ssh --worker=all "--command=mkdir -p $(remote_quote "$LOCAL_DATA_DIR") && gcloud storage rsync --recursive $(remote_quote "$url") $(remote_quote "$LOCAL_DATA_DIR")"
}

cmd_run() {
  # BUCKET is needed only for the defaults it fills in.
  if [[ -z "$MODEL_DIR" ]] || [[ -z "$DATA_URL" && (-z "$TRAIN_DIR" || -z "$EVAL_DIR") ]]; then
    require BUCKET
  fi
  local model_dir="${MODEL_DIR:-gs://$BUCKET/runs/$RUN_NAME}"
  local data_url="${DATA_URL:-gs://$BUCKET/data/seq128}"
  local train_dir="${TRAIN_DIR:-$data_url/train}"
  local eval_dir="${EVAL_DIR:-$data_url/eval}"
  local train=(.venv/bin/python -m pretraining.train "--experiment=$EXPERIMENT"
    "--model_dir=$model_dir" --strategy=tpu "--tpu=$(tpu_address)"
    "--override=data.train_dir=$train_dir")
  train+=("--override=data.eval_dir=$eval_dir")
  if [[ -n "$INIT_CHECKPOINT" ]]; then
    train+=("--override=train.init_checkpoint=$INIT_CHECKPOINT")
  fi
  train+=("${EXTRA[@]}")
  local dir
  dir="$(remote_quote "$REMOTE_DIR")"
  # Detached: the trainer outlives the ssh session; one log and pid per worker.
  gcloud_tpu ssh "--worker=$RUN_WORKERS" "--command=cd $dir && mkdir -p logs && { nohup setsid $(remote_quote "${train[@]}") > \"logs/train-\$(hostname).log\" 2>&1 < /dev/null & echo \$! > \"logs/train-\$(hostname).pid\"; } && echo \"\$(hostname): started, log ~/$REMOTE_DIR/logs/train-\$(hostname).log\""
}

cmd_status() {
  gcloud_tpu describe "--format=value(state,health,acceleratorType)"
  gcloud_tpu ssh --worker=all "--command=cd $(remote_quote "$REMOTE_DIR") && if pid=\$(cat \"logs/train-\$(hostname).pid\" 2>/dev/null) && kill -0 \"\$pid\" 2>/dev/null; then echo \"\$(hostname): training (pid \$pid)\"; else echo \"\$(hostname): not training\"; fi; tail -n 1 \"logs/train-\$(hostname).log\" 2>/dev/null || true"
}

cmd_logs() {
  local tail_flags="-n $LOG_LINES"
  if [[ "$FOLLOW" == 1 ]]; then
    tail_flags+=" -F"
  fi
  gcloud_tpu ssh "--worker=$LOG_WORKER" "--command=tail $tail_flags $(remote_quote "$REMOTE_DIR")/logs/train-*.log"
}

cmd_stop() {
  gcloud_tpu ssh --worker=all "--command=cd $(remote_quote "$REMOTE_DIR") && if pid=\$(cat \"logs/train-\$(hostname).pid\" 2>/dev/null) && kill -0 \"\$pid\" 2>/dev/null; then kill -TERM \"\$pid\" && echo \"\$(hostname): sent SIGTERM to \$pid (checkpoint, then exit 75)\"; else echo \"\$(hostname): not training\"; fi"
}

cmd_delete() {
  gcloud_tpu delete --quiet
}

COMMAND=""
EXTRA=()
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --spot) CAPACITY=--spot ;;
    --preemptible) CAPACITY=--preemptible ;;
    --follow) FOLLOW=1 ;;
    --) shift; EXTRA=("$@"); break ;;
    create | setup | stage | run | status | logs | stop | delete)
      [[ -z "$COMMAND" ]] || die "one command at a time. Received: $COMMAND and $1"
      COMMAND="$1" ;;
    *) die "unknown argument: $(printf '%q' "$1") (see --help)" ;;
  esac
  shift
done
[[ -n "$COMMAND" ]] || { usage >&2; die "no command given (create, setup, stage, run, status, logs, stop, delete)"; }
if ((${#EXTRA[@]})) && [[ "$COMMAND" != run ]]; then
  die "flags after -- go to the trainer and apply to 'run' only"
fi
require PROJECT ZONE TPU_NAME
"cmd_$COMMAND"
