#!/bin/bash
# Top-k predictions on image files or folders.
# Usage: bash scripts/run_infer.sh [MODEL] [CKPT_OR_MINDIR] [IMAGES] [OUT_FILE(optional, .csv or .json)]
#   CKPT_OR_MINDIR  a MindSpore .ckpt, or a .mindir exported by scripts/run_export.sh (its .json sidecar beside it)
#   DEVICE_TARGET (CPU|GPU|Ascend, default CPU), TOPK and BATCH_SIZE may be set in the environment.
set -e
if [ $# -lt 3 ] || [ $# -gt 4 ]; then
  echo "Usage: bash scripts/run_infer.sh [MODEL] [CKPT_OR_MINDIR] [IMAGES] [OUT_FILE(optional)]"
  exit 1
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, installed or not
MODEL=$1; WEIGHTS=$(realpath -m "$2"); IMAGES=$(realpath -m "$3")
[ -f "$WEIGHTS" ] || { echo "error: checkpoint/MINDIR $WEIGHTS does not exist"; exit 1; }
[ -e "$IMAGES" ] || { echo "error: images path $IMAGES does not exist (an image file or a folder of images)"; exit 1; }
case "$WEIGHTS" in
  *.mindir) SRC=(--mindir "$WEIGHTS") ;;
  *) SRC=(--ckpt "$WEIGHTS") ;;
esac
OUT=()
if [ $# -eq 4 ]; then
  OUT_FILE=$(realpath -m "$4")
  case "$OUT_FILE" in *.csv|*.json) ;; *) echo "error: OUT_FILE must end in .csv or .json, got $4"; exit 1;; esac
  [ -d "$(dirname "$OUT_FILE")" ] || { echo "error: folder $(dirname "$OUT_FILE") does not exist"; exit 1; }
  OUT=(--out "$OUT_FILE")
fi
python "$ROOT/scripts/infer.py" --model "$MODEL" "${SRC[@]}" "$IMAGES" "${OUT[@]}" \
  --device_target "${DEVICE_TARGET:-CPU}" --topk "${TOPK:-5}" --batch_size "${BATCH_SIZE:-16}"
