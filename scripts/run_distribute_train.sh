#!/usr/bin/env bash
# Data-parallel training on Ascend: msrun (one or several servers) or a rank table (one process per device).
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: bash scripts/run_distribute_train.sh CONFIG DATA_DIR WORKER_NUM [LOCAL_WORKER_NUM] [train.py flags...]
       bash scripts/run_distribute_train.sh CONFIG DATA_DIR RANK_TABLE_FILE [train.py flags...]

msrun mode (third argument a number):
  WORKER_NUM        NPUs in the whole job; LOCAL_WORKER_NUM: NPUs on this server (default WORKER_NUM)
  Environment: MASTER_ADDR (default 127.0.0.1), MASTER_PORT (default 8118), NODE_RANK (default 0),
  LOG_DIR (default outputs/logs/<config>_<time>, one worker_<rank>.log each).
  Several servers: run the same command on every server with the same MASTER_ADDR, MASTER_PORT and
  WORKER_NUM, its own LOCAL_WORKER_NUM and NODE_RANK.
rank-table mode (third argument a JSON file, HCCL's rank table of this server):
  one process per device listed in the table, with DEVICE_ID, RANK_ID, RANK_SIZE set; RANK_START (default 0)
  is the first rank of this server for multi-server tables. Logs: LOG_DIR/rank_<id>.log.
flags: passed to train.py (batch_size is per device; the log shows the global batch and the scaled LR).
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && { usage; exit 0; }
[[ $# -ge 3 ]] || die "CONFIG, DATA_DIR and WORKER_NUM or RANK_TABLE_FILE are required"
CONFIG="$1"; DATA_DIR="$2"; THIRD="$3"; shift 3
need_file CONFIG "$CONFIG"
need_dir DATA_DIR "$DATA_DIR"
CONFIG="$(abspath "$CONFIG")"; DATA_DIR="$(abspath "$DATA_DIR")"
LOG_DIR="${LOG_DIR:-$REPO_ROOT/outputs/logs/$(basename "$CONFIG" .yaml)_$(date +%Y%m%d_%H%M%S)}"

if [[ "$THIRD" =~ ^[0-9]+$ ]]; then
  WORKER_NUM="$THIRD"; LOCAL_WORKER_NUM="$WORKER_NUM"
  if [[ $# -gt 0 && "$1" != --* ]]; then LOCAL_WORKER_NUM="$1"; shift; fi
  need_int WORKER_NUM "$WORKER_NUM" 1
  need_int LOCAL_WORKER_NUM "$LOCAL_WORKER_NUM" 1
  (( LOCAL_WORKER_NUM <= WORKER_NUM )) || die "LOCAL_WORKER_NUM ($LOCAL_WORKER_NUM) exceeds WORKER_NUM ($WORKER_NUM)"
  MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"; MASTER_PORT="${MASTER_PORT:-8118}"; NODE_RANK="${NODE_RANK:-0}"
  need_int MASTER_PORT "$MASTER_PORT" 1024
  need_int NODE_RANK "$NODE_RANK"
  mkdir -p "$LOG_DIR"
  cd "$REPO_ROOT"
  echo "msrun: $WORKER_NUM workers ($LOCAL_WORKER_NUM here, node $NODE_RANK), master $MASTER_ADDR:$MASTER_PORT, logs in $LOG_DIR"
  exec msrun --worker_num="$WORKER_NUM" --local_worker_num="$LOCAL_WORKER_NUM" --master_addr="$MASTER_ADDR" \
    --master_port="$MASTER_PORT" --node_rank="$NODE_RANK" --log_dir="$LOG_DIR" --join=True \
    --cluster_time_out="${CLUSTER_TIME_OUT:-600}" \
    train.py --config "$CONFIG" --data_dir "$DATA_DIR" --device_target Ascend --distribute true "$@"
fi

RANK_TABLE_FILE="$THIRD"
need_file RANK_TABLE_FILE "$RANK_TABLE_FILE"
RANK_TABLE_FILE="$(abspath "$RANK_TABLE_FILE")"
# Devices of this server, in table order (HCCL rank tables list them under server_list[].device[]).
mapfile -t DEVICES < <("$PYTHON" - "$RANK_TABLE_FILE" <<'PY'
import json, socket, sys
table = json.load(open(sys.argv[1]))
servers = table.get("server_list", [])
host_ips = set(socket.gethostbyname_ex(socket.gethostname())[2])
mine = [s for s in servers if s.get("server_id") in host_ips] or servers[:1]
for s in mine:
    for d in s.get("device", []):
        print(d["device_id"])
PY
)
[[ ${#DEVICES[@]} -gt 0 ]] || die "no devices found in $RANK_TABLE_FILE"
RANK_SIZE="$("$PYTHON" -c 'import json,sys; t=json.load(open(sys.argv[1])); print(sum(len(s.get("device",[])) for s in t.get("server_list",[])))' "$RANK_TABLE_FILE")"
RANK_START="${RANK_START:-0}"; need_int RANK_START "$RANK_START"
mkdir -p "$LOG_DIR"
export RANK_TABLE_FILE RANK_SIZE
cd "$REPO_ROOT"
pids=()
for i in "${!DEVICES[@]}"; do
  rank=$((RANK_START + i))
  DEVICE_ID="${DEVICES[$i]}" RANK_ID="$rank" \
    "$PYTHON" train.py --config "$CONFIG" --data_dir "$DATA_DIR" --device_target Ascend --distribute true "$@" \
    > "$LOG_DIR/rank_$rank.log" 2>&1 &
  pids+=($!)
done
echo "rank table: ${#DEVICES[@]} processes (ranks $RANK_START..$((RANK_START + ${#DEVICES[@]} - 1)) of $RANK_SIZE), logs in $LOG_DIR"
status=0
for pid in "${pids[@]}"; do
  if ! wait -n; then
    status=1
    echo "error: a rank failed; stopping the others (see $LOG_DIR)" >&2
    kill "${pids[@]}" 2>/dev/null || true
    break
  fi
done
wait || true
exit "$status"
