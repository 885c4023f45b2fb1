#!/usr/bin/env bash
# Data-parallel training with msrun (GPU; DEVICE_TARGET=CPU runs the same job on CPU workers).
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: bash scripts/run_distribute_train_gpu.sh CONFIG DATA_DIR WORKER_NUM [LOCAL_WORKER_NUM] [train.py flags...]

  CONFIG            recipe
  DATA_DIR          data set root (the same path on every node)
  WORKER_NUM        processes in the whole job (one per GPU)
  LOCAL_WORKER_NUM  processes on this node (default WORKER_NUM)
  flags             passed to train.py (batch_size is per device; the log shows the global batch and LR)

Environment: MASTER_ADDR (default 127.0.0.1), MASTER_PORT (default 8118), NODE_RANK (default 0; set it on
every node of a multi-node job), LOG_DIR (default outputs/logs/<config name>_<time>; one log per rank),
DEVICE_TARGET (default GPU).
Multi-node: run the same command on each node with the same MASTER_ADDR/MASTER_PORT/WORKER_NUM and its NODE_RANK.
mpirun alternative: mpirun -n WORKER_NUM --output-filename LOG_DIR python train.py --config CONFIG
  --data_dir DATA_DIR --device_target GPU --distribute true   (MindSpore's OpenMPI launch, no rank table needed).
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && { usage; exit 0; }
[[ $# -ge 3 ]] || die "CONFIG, DATA_DIR and WORKER_NUM are required"
CONFIG="$1"; DATA_DIR="$2"; WORKER_NUM="$3"; shift 3
LOCAL_WORKER_NUM="$WORKER_NUM"
if [[ $# -gt 0 && "$1" != --* ]]; then LOCAL_WORKER_NUM="$1"; shift; fi
need_file CONFIG "$CONFIG"
need_dir DATA_DIR "$DATA_DIR"
need_int WORKER_NUM "$WORKER_NUM" 1
need_int LOCAL_WORKER_NUM "$LOCAL_WORKER_NUM" 1
(( LOCAL_WORKER_NUM <= WORKER_NUM )) || die "LOCAL_WORKER_NUM ($LOCAL_WORKER_NUM) exceeds WORKER_NUM ($WORKER_NUM)"
DEVICE_TARGET="${DEVICE_TARGET:-GPU}"; need_device "$DEVICE_TARGET"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"; MASTER_PORT="${MASTER_PORT:-8118}"; NODE_RANK="${NODE_RANK:-0}"
need_int MASTER_PORT "$MASTER_PORT" 1024
need_int NODE_RANK "$NODE_RANK"
CONFIG="$(abspath "$CONFIG")"; DATA_DIR="$(abspath "$DATA_DIR")"
LOG_DIR="${LOG_DIR:-$REPO_ROOT/outputs/logs/$(basename "$CONFIG" .yaml)_$(date +%Y%m%d_%H%M%S)}"
mkdir -p "$LOG_DIR"; LOG_DIR="$(abspath "$LOG_DIR")"

cd "$REPO_ROOT"
echo "msrun: $WORKER_NUM workers ($LOCAL_WORKER_NUM here, node $NODE_RANK), master $MASTER_ADDR:$MASTER_PORT, logs in $LOG_DIR"
exec msrun --worker_num="$WORKER_NUM" --local_worker_num="$LOCAL_WORKER_NUM" --master_addr="$MASTER_ADDR" \
  --master_port="$MASTER_PORT" --node_rank="$NODE_RANK" --log_dir="$LOG_DIR" --join=True \
  --cluster_time_out="${CLUSTER_TIME_OUT:-300}" \
  train.py --config "$CONFIG" --data_dir "$DATA_DIR" --device_target "$DEVICE_TARGET" --distribute true "$@"
