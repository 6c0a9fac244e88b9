#!/bin/bash
# Data-parallel training with msrun, on one node or several. Usage:
#   bash scripts/run_distribute_train.sh CONFIG DATA_PATH DEVICE_NUM DEVICE_TARGET [NODE_NUM NODE_RANK MASTER_ADDR [MASTER_PORT]] [--key value ...]
# DEVICE_NUM is the number of devices (workers) on THIS node; the job has NODE_NUM x DEVICE_NUM ranks. Run the same
# command on every node, each with its own NODE_RANK (0 .. NODE_NUM-1); MASTER_ADDR is an address of node 0 that the
# other nodes reach (required when NODE_NUM > 1; 127.0.0.1 on one node), MASTER_PORT a free port there (default 8118).
# NODE_NUM, NODE_RANK, MASTER_ADDR and MASTER_PORT may also come from the environment; LOG_DIR (default ./msrun_log)
# too. Trailing --key value pairs override config keys (e.g. --accumulation_steps 2). The config is validated before
# any process starts; DRY_RUN=1 prints the msrun command and stops.
# Global batch = batch_size x NODE_NUM x DEVICE_NUM x accumulation_steps (the lr scales to it with lr_scale: linear).
set -e
usage="Usage: bash scripts/run_distribute_train.sh CONFIG DATA_PATH DEVICE_NUM DEVICE_TARGET [NODE_NUM NODE_RANK MASTER_ADDR [MASTER_PORT]] [--key value ...]  (DEVICE_TARGET: CPU|GPU|Ascend; NODE_NUM/NODE_RANK/MASTER_ADDR/MASTER_PORT also from the environment)"
POS=(); while [ $# -gt 0 ] && [[ "$1" != --* ]]; do POS+=("$1"); shift; done
EXTRA=("$@")
if [ ${#POS[@]} -lt 4 ] || [ ${#POS[@]} -gt 8 ]; then
  echo "$usage"; exit 1
fi
fail() { echo "error: $*" >&2; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, installed or not
CONFIG=$(realpath -m "${POS[0]}"); DATA_PATH=$(realpath -m "${POS[1]}"); DEVICE_NUM=${POS[2]}; TARGET=${POS[3]}
NODE_NUM=${POS[4]:-${NODE_NUM:-1}}; NODE_RANK=${POS[5]:-${NODE_RANK:-0}}
MASTER_ADDR=${POS[6]:-${MASTER_ADDR:-}}; MASTER_PORT=${POS[7]:-${MASTER_PORT:-8118}}
[ -f "$CONFIG" ] || fail "CONFIG: $CONFIG does not exist"
[ -d "$DATA_PATH" ] || fail "DATA_PATH: $DATA_PATH is not a directory (expected train/ and val/ inside)"
[[ "$DEVICE_NUM" =~ ^[1-9][0-9]*$ ]] || fail "DEVICE_NUM must be a positive integer (devices on this node), got '$DEVICE_NUM'"
case "${TARGET,,}" in cpu|gpu|ascend) ;;  # any case; the Python side normalises it
  *) fail "DEVICE_TARGET must be CPU, GPU or Ascend, got '$TARGET'";; esac
[[ "$NODE_NUM" =~ ^[1-9][0-9]*$ ]] || fail "NODE_NUM must be a positive integer (number of nodes), got '$NODE_NUM'"
[[ "$NODE_RANK" =~ ^[0-9]+$ ]] && [ "$NODE_RANK" -lt "$NODE_NUM" ] \
  || fail "NODE_RANK must be an integer in [0, NODE_NUM) = [0, $NODE_NUM), got '$NODE_RANK'"
if [ -z "$MASTER_ADDR" ]; then
  [ "$NODE_NUM" -eq 1 ] || fail "MASTER_ADDR is required when NODE_NUM > 1: give node 0's address (7th argument or MASTER_ADDR=...) on every node"
  MASTER_ADDR=127.0.0.1
fi
[[ "$MASTER_PORT" =~ ^[0-9]+$ ]] && [ "$MASTER_PORT" -ge 1 ] && [ "$MASTER_PORT" -le 65535 ] \
  || fail "MASTER_PORT must be a port number in 1..65535, got '$MASTER_PORT'"
command -v msrun >/dev/null || fail "msrun not found (it ships with the mindspore wheel; activate its environment)"
TRAIN_ARGS=(-c "$CONFIG" --data_dir "$DATA_PATH" --device_target "$TARGET" --distribute true "${EXTRA[@]}")
# the whole config (with the overrides) is checked here, before msrun starts anything
python -c 'import sys; from convattn.engine.cli import check_main; sys.exit(check_main(sys.argv[1:]))' \
  "${TRAIN_ARGS[@]}" || fail "the config above was refused; nothing was started"
WORKERS=$((NODE_NUM * DEVICE_NUM))
CMD=(msrun --worker_num="$WORKERS" --local_worker_num="$DEVICE_NUM" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR"
     --master_port="$MASTER_PORT" --log_dir="${LOG_DIR:-./msrun_log}" --join=True --cluster_time_out=600
     "$ROOT/scripts/train.py" "${TRAIN_ARGS[@]}")
echo "node $NODE_RANK of $NODE_NUM, $DEVICE_NUM worker(s) here, $WORKERS in all, master $MASTER_ADDR:$MASTER_PORT"
printf "%q " "${CMD[@]}"; echo  # quoted: the printed command can be pasted as it is
[ "${DRY_RUN:-0}" = 1 ] && exit 0
exec "${CMD[@]}"
