#!/usr/bin/env bash
# Evaluate a checkpoint (.ckpt) or an exported MindIR (.mindir) on a data set's val split.
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: bash scripts/run_eval.sh CONFIG DATA_DIR CHECKPOINT [DEVICE_TARGET] [eval.py flags...]

  CONFIG         the recipe the model was trained with (or the run's saved config.yaml)
  DATA_DIR       data set root (DATA_DIR/val/<class>/... for ImageFolder)
  CHECKPOINT     .ckpt of this project, or an exported .mindir
  DEVICE_TARGET  CPU (default), GPU or Ascend
Writes <output_dir>/eval.json.
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && { usage; exit 0; }
[[ $# -ge 3 ]] || die "CONFIG, DATA_DIR and CHECKPOINT are required"
CONFIG="$1"; DATA_DIR="$2"; CHECKPOINT="$3"; shift 3
DEVICE_TARGET=CPU
if [[ $# -gt 0 && "$1" != --* ]]; then DEVICE_TARGET="$1"; shift; fi
need_file CONFIG "$CONFIG"
need_dir DATA_DIR "$DATA_DIR"
need_file CHECKPOINT "$CHECKPOINT"
need_device "$DEVICE_TARGET"
CONFIG="$(abspath "$CONFIG")"; DATA_DIR="$(abspath "$DATA_DIR")"; CHECKPOINT="$(abspath "$CHECKPOINT")"
cd "$REPO_ROOT"
exec "$PYTHON" eval.py --config "$CONFIG" --data_dir "$DATA_DIR" --checkpoint "$CHECKPOINT" \
  --device_target "$DEVICE_TARGET" "$@"
