#!/bin/bash
# Single-device training. Usage: bash scripts/run_standalone_train.sh [CONFIG] [DATA_PATH] [DEVICE_TARGET]
set -e
if [ $# -ne 3 ]; then
  echo "Usage: bash scripts/run_standalone_train.sh [CONFIG] [DATA_PATH] [DEVICE_TARGET]  (DEVICE_TARGET: CPU|GPU|Ascend)"
  exit 1
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, installed or not
CONFIG=$(realpath -m "$1"); DATA_PATH=$(realpath -m "$2"); TARGET=$3
[ -f "$CONFIG" ] || { echo "error: config $CONFIG does not exist"; exit 1; }
[ -d "$DATA_PATH" ] || { echo "error: data path $DATA_PATH is not a directory (expected train/ and val/ inside)"; exit 1; }
case "${TARGET,,}" in cpu|gpu|ascend) ;;  # any case; the Python side normalises it
  *) echo "error: DEVICE_TARGET must be CPU, GPU or Ascend, got '$TARGET'"; exit 1;; esac
python "$ROOT/scripts/train.py" -c "$CONFIG" --data_dir "$DATA_PATH" --device_target "$TARGET" --distribute false
