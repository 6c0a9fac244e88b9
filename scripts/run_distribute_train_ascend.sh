#!/bin/bash
# Classic rank-table launcher for Ascend: one process per device (DEVICE_ID / RANK_ID / RANK_SIZE),
# per-rank work directories ./train_parallel<i>/ with their own log, CPU cores split evenly with taskset.
# Usage: bash scripts/run_distribute_train_ascend.sh [RANK_TABLE_FILE] [CONFIG] [DATA_PATH]
set -e
if [ $# -ne 3 ]; then
  echo "Usage: bash scripts/run_distribute_train_ascend.sh [RANK_TABLE_FILE] [CONFIG] [DATA_PATH]"
  exit 1
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RANK_TABLE=$(realpath -m "$1"); CONFIG=$(realpath -m "$2"); DATA_PATH=$(realpath -m "$3")
[ -f "$RANK_TABLE" ] || { echo "error: rank table $RANK_TABLE does not exist"; exit 1; }
[ -f "$CONFIG" ] || { echo "error: config $CONFIG does not exist"; exit 1; }
[ -d "$DATA_PATH" ] || { echo "error: data path $DATA_PATH is not a directory (expected train/ and val/ inside)"; exit 1; }
RANK_SIZE=$(python -c "import json,sys; t=json.load(open(sys.argv[1])); print(sum(len(s['device']) for s in t['server_list']))" "$RANK_TABLE") \
  || { echo "error: cannot read the device count from $RANK_TABLE (expected server_list[].device[])"; exit 1; }
export RANK_TABLE_FILE=$RANK_TABLE RANK_SIZE
CORES=$(nproc); PER=$((CORES / RANK_SIZE)); [ $PER -ge 1 ] || PER=1
for ((i = 0; i < RANK_SIZE; i++)); do
  export DEVICE_ID=$i RANK_ID=$i
  WORK="$PWD/train_parallel$i"; rm -rf "$WORK"; mkdir -p "$WORK"
  START=$((i * PER % CORES)); END=$((START + PER - 1))
  echo "rank $i: device $DEVICE_ID, cores $START-$END, log $WORK/log"
  (cd "$WORK" && taskset -c "$START-$END" python "$ROOT/scripts/train.py" -c "$CONFIG" --data_dir "$DATA_PATH" \
     --device_target Ascend --distribute true --ckpt_dir "$WORK/output" > log 2>&1) &
done
wait
