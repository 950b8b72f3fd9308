#!/usr/bin/env bash
# Pretrain on several GPU machines (MultiWorkerMirroredStrategy), one worker per host.
#
#   export HOSTS="gpu-1,gpu-2" PORT=12345 MODEL_DIR=gs://my-bucket/runs/bert_base_2x8gpu
#   launch/gpu_multi_worker.sh --print     # the TF_CONFIG and command of each host
#   launch/gpu_multi_worker.sh             # start every worker over ssh, detached
#
# Each host needs this repository at ~/$REMOTE_DIR with pip install -e ".[gpu]"
# done, the data at TRAIN_DIR, and MODEL_DIR must be shared by all hosts
# (gs:// or a shared file system). Worker 0 is the chief (it writes the run
# directory). Every command is printed before it runs; --dry-run prints only.
set -euo pipefail

# ---- Settings: each can be overridden from the environment. ----------------
HOSTS="${HOSTS:-}"                    # comma-separated host names (also the ssh targets)
PORT="${PORT:-12345}"                 # TF_CONFIG port on every host (or host:port in HOSTS)
SSH_USER="${SSH_USER:-}"              # ssh as this user ("" = your ssh config)
SSH_OPTS="${SSH_OPTS:-}"              # extra ssh options, e.g. "-i ~/.ssh/id_gpu"
REMOTE_DIR="${REMOTE_DIR:-bert-pretraining}"  # repository on each host, relative to $HOME
PYTHON="${PYTHON:-.venv/bin/python}"  # relative to REMOTE_DIR
EXPERIMENT="${EXPERIMENT:-configs/experiments/bert_base_8gpu_lamb.json}"
MODEL_DIR="${MODEL_DIR:-}"            # shared by all hosts: gs://… or a shared mount
TRAIN_DIR="${TRAIN_DIR:-}"            # data.train_dir on every host ("" = the experiment's)
EVAL_DIR="${EVAL_DIR:-}"
# -----------------------------------------------------------------------------

SCRIPT="$(basename "$0")"
DRY_RUN=0
PRINT=0
XLA=0
MIXED_PRECISION=""
EXTRA=()

usage() {
  cat <<EOF
Usage: $SCRIPT [--dry-run | --print] [--xla] [--mixed_precision=POLICY] [-- TRAIN_FLAGS...]

For each host in HOSTS, builds TF_CONFIG
  {"cluster": {"worker": ["h1:PORT", "h2:PORT", ...]}, "task": {"type": "worker", "index": i}}
and starts python -m pretraining.train --strategy=multi_worker on that host
over ssh, detached (nohup setsid), logging to ~/\$REMOTE_DIR/logs/worker-i.log.

Options:
  --print                   print each host's TF_CONFIG and command (to run by hand), exit 0
  --dry-run                 print the ssh commands without running them, exit 0
  --xla                     --override=train.jit_compile=true
  --mixed_precision=POLICY  mixed_float16 or mixed_bfloat16 (--override=train.mixed_precision=…)
  -h, --help                this help
  -- TRAIN_FLAGS            passed to the trainer, e.g. -- --override=train.steps=1000

Environment (current value):
  HOSTS=$HOSTS PORT=$PORT SSH_USER=$SSH_USER SSH_OPTS=$SSH_OPTS
  REMOTE_DIR=$REMOTE_DIR PYTHON=$PYTHON EXPERIMENT=$EXPERIMENT
  MODEL_DIR=$MODEL_DIR TRAIN_DIR=$TRAIN_DIR EVAL_DIR=$EVAL_DIR

Logs:  ssh HOST tail -F \$REMOTE_DIR/logs/worker-i.log
Stop:  ssh HOST 'kill -TERM \$(cat \$REMOTE_DIR/logs/worker-i.pid)' on every host
       (the trainer checkpoints and exits 75; running this script again resumes).
Rehearse on one machine first: python launch/local_cluster.py --num_workers=2 -- ...
EOF
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

quote() {
  local quoted
  printf -v quoted '%q ' "$@"
  printf '%s' "${quoted% }"
}

while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --print) PRINT=1 ;;
    --xla) XLA=1 ;;
    --mixed_precision=*) MIXED_PRECISION="${1#*=}" ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument: $(quote "$1") (trainer flags go after --; see --help)" ;;
  esac
  shift
done

[[ -n "$HOSTS" ]] || die "HOSTS is not set: export HOSTS=gpu-host-1,gpu-host-2"
[[ -n "$MODEL_DIR" ]] || die "MODEL_DIR is not set: export MODEL_DIR=gs://my-bucket/runs/bert_base (shared by all hosts)"
if [[ ! "$PORT" =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
  die "PORT must be a port number (1-65535). Received: PORT=$(quote "$PORT")"
fi
case "$MIXED_PRECISION" in
  "" | mixed_float16 | mixed_bfloat16) ;;
  *) die "--mixed_precision must be mixed_float16 or mixed_bfloat16. Received: $(quote "$MIXED_PRECISION")" ;;
esac

# Hosts and their cluster addresses (host:port).
IFS=',' read -r -a HOST_LIST <<<"$HOSTS"
ADDRESSES=()
SSH_HOSTS=()
for entry in "${HOST_LIST[@]}"; do
  entry="${entry// /}"
  [[ -n "$entry" ]] || die "HOSTS has an empty entry. Received: HOSTS=$(quote "$HOSTS")"
  if [[ ! "$entry" =~ ^[A-Za-z0-9._-]+(:[0-9]+)?$ ]]; then
    die "HOSTS entries must be host names or IPs, optionally host:port. Received: $(quote "$entry")"
  fi
  if [[ "$entry" == *:* ]]; then
    ADDRESSES+=("$entry")
  else
    ADDRESSES+=("$entry:$PORT")
  fi
  SSH_HOSTS+=("${entry%%:*}")
done

# TF_CONFIG of worker $1 (host names were checked above, so the JSON holds no
# quote or shell character and can be single-quoted as it is).
tf_config() {
  local index="$1" workers="" address
  for address in "${ADDRESSES[@]}"; do
    workers+="${workers:+, }\"$address\""
  done
  printf '{"cluster": {"worker": [%s]}, "task": {"type": "worker", "index": %d}}' \
    "$workers" "$index"
}

train=("$PYTHON" -m pretraining.train "--experiment=$EXPERIMENT" "--model_dir=$MODEL_DIR"
  --strategy=multi_worker)
if [[ -n "$TRAIN_DIR" ]]; then
  train+=("--override=data.train_dir=$TRAIN_DIR")
fi
if [[ -n "$EVAL_DIR" ]]; then
  train+=("--override=data.eval_dir=$EVAL_DIR")
fi
if [[ "$XLA" == 1 ]]; then
  train+=(--override=train.jit_compile=true)
fi
if [[ -n "$MIXED_PRECISION" ]]; then
  train+=("--override=train.mixed_precision=$MIXED_PRECISION")
fi
train+=("${EXTRA[@]}")

read -r -a ssh_opts <<<"$SSH_OPTS"
for i in "${!SSH_HOSTS[@]}"; do
  config="$(tf_config "$i")"
  if [[ "$PRINT" == 1 ]]; then
    printf '# worker %d on %s\n' "$i" "${SSH_HOSTS[$i]}"
    printf "cd %s && TF_CONFIG='%s' %s\n" "$(quote "$REMOTE_DIR")" "$config" \
      "$(quote "${train[@]}")"
    continue
  fi
  target="${SSH_HOSTS[$i]}"
  if [[ -n "$SSH_USER" ]]; then
    target="$SSH_USER@$target"
  fi
  log="logs/worker-$i.log"
  remote="cd $(quote "$REMOTE_DIR") && mkdir -p logs && { TF_CONFIG='$config' nohup setsid $(quote "${train[@]}") > $log 2>&1 < /dev/null & echo \$! > logs/worker-$i.pid; } && echo \"worker $i started on \$(hostname), log ~/$(quote "$REMOTE_DIR")/$log\""
  run ssh "${ssh_opts[@]}" "$target" "$remote"
done
