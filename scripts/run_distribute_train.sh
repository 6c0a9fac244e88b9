#!/bin/bash
# Data-parallel training with msrun (one node). Usage:
#   bash scripts/run_distribute_train.sh [CONFIG] [DATA_PATH] [DEVICE_NUM] [DEVICE_TARGET]
# Global batch = batch_size x DEVICE_NUM; with lr_scale: linear the lr scales to it. MASTER_PORT (default 8118)
# and LOG_DIR (default ./msrun_log) may be set in the environment.
set -e
if [ $# -ne 4 ]; then
  echo "Usage: bash scripts/run_distribute_train.sh [CONFIG] [DATA_PATH] [DEVICE_NUM] [DEVICE_TARGET]  (DEVICE_TARGET: CPU|GPU|Ascend)"
  exit 1
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONFIG=$(realpath -m "$1"); DATA_PATH=$(realpath -m "$2"); DEVICE_NUM=$3; TARGET=$4
[ -f "$CONFIG" ] || { echo "error: config $CONFIG does not exist"; exit 1; }
[ -d "$DATA_PATH" ] || { echo "error: data path $DATA_PATH is not a directory (expected train/ and val/ inside)"; exit 1; }
[[ "$DEVICE_NUM" =~ ^[1-9][0-9]*$ ]] || { echo "error: DEVICE_NUM must be a positive integer, got '$DEVICE_NUM'"; exit 1; }
case "$TARGET" in CPU|GPU|Ascend) ;; *) echo "error: DEVICE_TARGET must be CPU, GPU or Ascend, got '$TARGET'"; exit 1;; esac
command -v msrun >/dev/null || { echo "error: msrun not found (it ships with the mindspore wheel; activate its environment)"; exit 1; }
msrun --worker_num="$DEVICE_NUM" --local_worker_num="$DEVICE_NUM" --master_addr=127.0.0.1 \
  --master_port="${MASTER_PORT:-8118}" --log_dir="${LOG_DIR:-./msrun_log}" --join=True --cluster_time_out=600 \
  "$ROOT/scripts/train.py" -c "$CONFIG" --data_dir "$DATA_PATH" --device_target "$TARGET" --distribute true
