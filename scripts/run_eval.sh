#!/bin/bash
# Evaluate a checkpoint on the val tree. Usage: bash scripts/run_eval.sh [CONFIG] [DATA_PATH] [CKPT]
# DEVICE_TARGET may be set in the environment (default: the config's).
set -e
if [ $# -ne 3 ]; then
  echo "Usage: bash scripts/run_eval.sh [CONFIG] [DATA_PATH] [CKPT]"
  exit 1
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, installed or not
CONFIG=$(realpath -m "$1"); DATA_PATH=$(realpath -m "$2"); CKPT=$(realpath -m "$3")
[ -f "$CONFIG" ] || { echo "error: config $CONFIG does not exist"; exit 1; }
[ -d "$DATA_PATH" ] || { echo "error: data path $DATA_PATH is not a directory (expected val/ inside)"; exit 1; }
[ -f "$CKPT" ] || { echo "error: checkpoint $CKPT does not exist"; exit 1; }
python "$ROOT/scripts/eval.py" -c "$CONFIG" --data_dir "$DATA_PATH" --ckpt "$CKPT" --distribute false \
  ${DEVICE_TARGET:+--device_target $DEVICE_TARGET}
