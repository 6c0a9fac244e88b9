#!/usr/bin/env bash
# Export a registered model to MINDIR and ONNX (verified) -- a thin wrapper of export/export.py.
#   scripts/run_export.sh MODEL CKPT [OUT_DIR] [extra export.py flags...]
#   e.g. scripts/run_export.sh van_b0 van_b0.ckpt exported --dynamic_batch
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 MODEL CKPT [OUT_DIR] [--format MINDIR|ONNX|ALL] [--batch N] [--image_size H W] [--dynamic_batch] [--fp16] ..." >&2
  exit 2
fi
MODEL=$1; CKPT=$2; shift 2
OUT=exported
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then OUT=$1; shift; fi
HERE=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$HERE/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, installed or not
PY=${PYTHON:-python}
exec "$PY" "$HERE/export/export.py" --model "$MODEL" --ckpt "$CKPT" --format ALL --out "$OUT" "$@"
