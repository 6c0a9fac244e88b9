#!/usr/bin/env bash
# Reproduce the ACmix paper's inference-speed comparison (each hybrid beside its plain backbone).
# Usage: bash scripts/run_benchmark.sh [DEVICE_TARGET] [BATCH_SIZES] [OUT_DIR]
#   DEVICE_TARGET  CPU (default) | GPU | Ascend
#   BATCH_SIZES    comma-separated, default 8 (the paper's Ascend runs: e.g. 1,32)
#   OUT_DIR        default outputs/benchmark
# Extra settings through the environment: MODELS="acmix_* resnet*", PRECISION=float16, THREADS=2, ITERS=8.
set -euo pipefail
if [ $# -gt 3 ]; then
  echo "Usage: bash scripts/run_benchmark.sh [DEVICE_TARGET] [BATCH_SIZES] [OUT_DIR]" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, installed or not
DEVICE=${1:-CPU}
BATCHES=${2:-8}
OUT=${3:-outputs/benchmark}
case "${DEVICE,,}" in cpu|gpu|ascend) ;;  # any case; the Python side normalises it
  *) echo "error: DEVICE_TARGET must be CPU, GPU or Ascend, got '$DEVICE'" >&2; exit 2;; esac
ARGS=(--device_target "$DEVICE" --batch_sizes ${BATCHES//,/ } --out "$OUT" --precision "${PRECISION:-float32}"
      --iters "${ITERS:-8}")
[ -n "${THREADS:-}" ] && ARGS+=(--threads "$THREADS")
# shellcheck disable=SC2206
[ -n "${MODELS:-}" ] && ARGS+=(--models $MODELS)
export ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2}
cd "$ROOT"
python scripts/benchmark.py "${ARGS[@]}"
