#!/usr/bin/env bash
# Build pretraining records for a corpus in Cloud Storage on Google Cloud
# Dataflow (Apache Beam): a SentencePiece tokenizer trained here on a sample,
# then the shards + manifest written by Dataflow workers.
#
#   export PROJECT=my-project REGION=us-central1 BUCKET=my-bucket
#   export CORPUS='gs://my-bucket/wiki/*.txt' TOKENIZER_SAMPLE=gs://my-bucket/wiki/part-000.txt
#   launch/dataflow_build.sh --dry-run
#   launch/dataflow_build.sh -- --next_sentence --dupe_factor=5
#
# Every command is printed before it runs; --dry-run prints them only.
# Install first: pip install -e ".[cpu,beam]" (its own venv: Beam needs
# protobuf < 7) and the gcloud CLI, logged in (gcloud auth application-default login).
#
# Flink or Spark instead of Dataflow: run the build step yourself with
#   python -m data_pipeline.build ... --runner=FlinkRunner \
#     --beam_option=--flink_master=HOST:8081 --beam_option=--environment_type=LOOPBACK
#   (SparkRunner: --beam_option=--spark_master_url=spark://HOST:7077); the
#   workers need this package installed (pip install -e ".[beam]") and the
#   corpus, tokenizer and output on a file system every worker reads (gs://, hdfs://).
set -euo pipefail

# ---- Settings: each can be overridden from the environment. ----------------
PROJECT="${PROJECT:-}"                # Google Cloud project (required)
REGION="${REGION:-us-central1}"       # Dataflow region
BUCKET="${BUCKET:-}"                  # gs://BUCKET/dataflow/{tmp,staging} (required)
CORPUS="${CORPUS:-}"                  # gs:// glob(s) of the corpus files (required)
OUTPUT_DIR="${OUTPUT_DIR:-}"          # records ("" = gs://BUCKET/data/seq$MAX_SEQ_LENGTH)
TOKENIZER="${TOKENIZER:-}"            # an existing gs://…/spm.model or vocab.txt ("" = train one)
TOKENIZER_SAMPLE="${TOKENIZER_SAMPLE:-}"  # gs:// file(s) to train it on (when TOKENIZER="")
VOCAB_SIZE="${VOCAB_SIZE:-32000}"
TASK="${TASK:-mlm}"                   # mlm | seq2seq | lm
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-128}"
MAX_PREDICTIONS="${MAX_PREDICTIONS:-20}"
NUM_SHARDS="${NUM_SHARDS:-1024}"
EVAL_FRACTION="${EVAL_FRACTION:-0.001}"
MACHINE_TYPE="${MACHINE_TYPE:-n2-standard-8}"  # Dataflow worker type
NUM_WORKERS="${NUM_WORKERS:-8}"       # workers at start
MAX_WORKERS="${MAX_WORKERS:-32}"      # autoscaling ceiling
JOB_NAME="${JOB_NAME:-bert-data-build}"
WORK_DIR="${WORK_DIR:-/tmp/dataflow_build}"  # local: the sample and the tokenizer
PYTHON="${PYTHON:-}"                  # default: .venv-beam/bin/python if present, else python3
# -----------------------------------------------------------------------------

SCRIPT="$(basename "$0")"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DRY_RUN=0
EXTRA=()

usage() {
  cat <<EOF
Usage: $SCRIPT [--dry-run] [-- BUILD_FLAGS...]

1. Unless TOKENIZER is set: copies TOKENIZER_SAMPLE to WORK_DIR, trains a
   SentencePiece model of VOCAB_SIZE pieces on it and uploads it to
   OUTPUT_DIR/tokenizer/.
2. Runs python -m data_pipeline.build --runner=DataflowRunner on CORPUS:
   MACHINE_TYPE workers (NUM_WORKERS, autoscaling to MAX_WORKERS), the package
   shipped to them with --setup_file, TensorFlow with --requirements_file
   (launch/dataflow_requirements.txt). The records are the bytes a local build
   of the same flags would write; the manifest is written last.

Options:
  --dry-run        print the commands without running them, then exit 0
  -h, --help       this help
  -- BUILD_FLAGS   passed to data_pipeline.build, e.g. -- --next_sentence --dupe_factor=5

Environment (current value):
  PROJECT=$PROJECT REGION=$REGION BUCKET=$BUCKET (PROJECT and BUCKET required)
  CORPUS=$CORPUS (required) OUTPUT_DIR=$OUTPUT_DIR
  TOKENIZER=$TOKENIZER TOKENIZER_SAMPLE=$TOKENIZER_SAMPLE VOCAB_SIZE=$VOCAB_SIZE
  TASK=$TASK MAX_SEQ_LENGTH=$MAX_SEQ_LENGTH MAX_PREDICTIONS=$MAX_PREDICTIONS
  NUM_SHARDS=$NUM_SHARDS EVAL_FRACTION=$EVAL_FRACTION
  MACHINE_TYPE=$MACHINE_TYPE NUM_WORKERS=$NUM_WORKERS MAX_WORKERS=$MAX_WORKERS
  JOB_NAME=$JOB_NAME WORK_DIR=$WORK_DIR PYTHON=$PYTHON

A second run on the same OUTPUT_DIR is refused unless -- --overwrite.
EOF
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument: $(printf '%q' "$1") (build flags go after --; see --help)" ;;
  esac
  shift
done

[[ -n "$PROJECT" ]] || die "PROJECT is not set: export PROJECT=my-project"
[[ -n "$BUCKET" ]] || die "BUCKET is not set: export BUCKET=my-bucket (Dataflow's temp and staging files)"
[[ -n "$CORPUS" ]] || die "CORPUS is not set: export CORPUS='gs://my-bucket/corpus/*.txt'"
if [[ -z "$TOKENIZER" && -z "$TOKENIZER_SAMPLE" ]]; then
  die "TOKENIZER_SAMPLE is not set: export TOKENIZER_SAMPLE=gs://my-bucket/corpus/part-000.txt (a sample to train the tokenizer on), or TOKENIZER=gs://…/spm.model"
fi
for number in VOCAB_SIZE MAX_SEQ_LENGTH MAX_PREDICTIONS NUM_SHARDS NUM_WORKERS MAX_WORKERS; do
  [[ "${!number}" =~ ^[1-9][0-9]*$ ]] \
    || die "$number must be a positive integer. Received: $(printf '%q' "${!number}")"
done
OUTPUT_DIR="${OUTPUT_DIR:-gs://$BUCKET/data/seq$MAX_SEQ_LENGTH}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$REPO_ROOT/.venv-beam/bin/python" ]]; then
    PYTHON="$REPO_ROOT/.venv-beam/bin/python"
  else
    PYTHON=python3
  fi
fi

cd "$REPO_ROOT"
if [[ -z "$TOKENIZER" ]]; then
  TOKENIZER="$OUTPUT_DIR/tokenizer/spm.model"
  run mkdir -p "$WORK_DIR/sample"
  run gcloud storage cp "$TOKENIZER_SAMPLE" "$WORK_DIR/sample/"
  run "$PYTHON" -m data_pipeline.train_tokenizer "--input=$WORK_DIR/sample/*" \
    "--vocab_size=$VOCAB_SIZE" "--output=$WORK_DIR/spm"
  run gcloud storage cp "$WORK_DIR/spm.model" "$WORK_DIR/spm.vocab" "$OUTPUT_DIR/tokenizer/"
fi

run "$PYTHON" -m data_pipeline.build --runner=DataflowRunner \
  "--input=$CORPUS" "--tokenizer=$TOKENIZER" "--output_dir=$OUTPUT_DIR" \
  "--task=$TASK" "--max_seq_length=$MAX_SEQ_LENGTH" \
  "--max_predictions_per_seq=$MAX_PREDICTIONS" "--num_shards=$NUM_SHARDS" \
  "--eval_fraction=$EVAL_FRACTION" \
  "--beam_option=--project=$PROJECT" "--beam_option=--region=$REGION" \
  "--beam_option=--temp_location=gs://$BUCKET/dataflow/tmp" \
  "--beam_option=--staging_location=gs://$BUCKET/dataflow/staging" \
  "--beam_option=--job_name=$JOB_NAME" \
  "--beam_option=--setup_file=$REPO_ROOT/setup.py" \
  "--beam_option=--requirements_file=$REPO_ROOT/launch/dataflow_requirements.txt" \
  "--beam_option=--machine_type=$MACHINE_TYPE" \
  "--beam_option=--num_workers=$NUM_WORKERS" \
  "--beam_option=--max_num_workers=$MAX_WORKERS" \
  "${EXTRA[@]}"
