#!/bin/bash
# Classic rank-table launcher for Ascend, run once on EVERY server of the table. Usage:
#   bash scripts/run_distribute_train_ascend.sh [--dry_run] RANK_TABLE_FILE CONFIG DATA_PATH [SERVER_ID] [--key value ...]
# It finds this server in the table (the server whose server_id/host_ip is an address of this machine, or the one
# SERVER_ID names: its server_id or 0-based index; also from the environment), and starts one process per device
# OF THIS SERVER with DEVICE_ID / RANK_ID taken from the table and RANK_SIZE = all devices of the table; per-rank
# work directories ./train_parallel<RANK_ID>/ with their own log, this server's CPU cores split evenly (taskset).
# Trailing --key value pairs override config keys (e.g. --accumulation_steps 2); the config is checked before any
# process starts. --dry_run (or --dry-run, or DRY_RUN=1) prints each process's environment and command and starts nothing.
# Global batch = batch_size x RANK_SIZE x accumulation_steps.
set -e
usage="Usage: bash scripts/run_distribute_train_ascend.sh [--dry_run] RANK_TABLE_FILE CONFIG DATA_PATH [SERVER_ID] [--key value ...]"
fail() { echo "error: $*" >&2; exit 1; }
DRY=${DRY_RUN:-0}
if [ "${1:-}" = "--dry_run" ] || [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
POS=(); while [ $# -gt 0 ] && [[ "$1" != --* ]]; do POS+=("$1"); shift; done
EXTRA=("$@")
if [ ${#POS[@]} -lt 3 ] || [ ${#POS[@]} -gt 4 ]; then echo "$usage"; exit 1; fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, installed or not
RANK_TABLE=$(realpath -m "${POS[0]}"); CONFIG=$(realpath -m "${POS[1]}"); DATA_PATH=$(realpath -m "${POS[2]}")
SERVER_ID=${POS[3]:-${SERVER_ID:-}}
[ -f "$RANK_TABLE" ] || fail "RANK_TABLE_FILE: $RANK_TABLE does not exist"
[ -f "$CONFIG" ] || fail "CONFIG: $CONFIG does not exist"
[ -d "$DATA_PATH" ] || fail "DATA_PATH: $DATA_PATH is not a directory (expected train/ and val/ inside)"
TABLE_OUT=$(python "$ROOT/src/convattn/engine/ranktable.py" "$RANK_TABLE" "$SERVER_ID") \
  || fail "RANK_TABLE_FILE $RANK_TABLE: no process started (see above)"
RANK_SIZE=$(echo "$TABLE_OUT" | awk '$1 == "RANK_SIZE" {print $2}')
read -r _ SERVER SERVER_INDEX <<< "$(echo "$TABLE_OUT" | grep '^SERVER ')"
mapfile -t DEVICES < <(echo "$TABLE_OUT" | awk '$1 == "DEVICE" {print $2, $3}')
TRAIN_ARGS=(-c "$CONFIG" --data_dir "$DATA_PATH" --device_target Ascend --distribute true "${EXTRA[@]}")
python -c 'import sys; from convattn.engine.cli import check_main; sys.exit(check_main(sys.argv[1:]))' \
  "${TRAIN_ARGS[@]}" || fail "the config above was refused; nothing was started"
LOCAL=${#DEVICES[@]}
echo "server $SERVER (index $SERVER_INDEX): $LOCAL of $RANK_SIZE devices; rank table $RANK_TABLE"
CORES=$(nproc); PER=$((CORES / LOCAL)); [ $PER -ge 1 ] || PER=1
for ((i = 0; i < LOCAL; i++)); do
  read -r DEV RANK <<< "${DEVICES[$i]}"
  WORK="$PWD/train_parallel$RANK"
  START=$((i * PER % CORES)); END=$((START + PER - 1))
  ENVS=(RANK_TABLE_FILE="$RANK_TABLE" RANK_SIZE="$RANK_SIZE" RANK_ID="$RANK" DEVICE_ID="$DEV" SERVER_ID="$SERVER")
  CMD=(taskset -c "$START-$END" python "$ROOT/scripts/train.py" "${TRAIN_ARGS[@]}" --ckpt_dir "$WORK/output")
  if [ "$DRY" = 1 ]; then
    echo "[dry-run] ${ENVS[*]} cwd=$WORK ${CMD[*]}"
    continue
  fi
  rm -rf "$WORK"; mkdir -p "$WORK"
  echo "rank $RANK: device $DEV, cores $START-$END, log $WORK/log"
  (cd "$WORK" && env "${ENVS[@]}" "${CMD[@]}" > log 2>&1) &
done
wait
