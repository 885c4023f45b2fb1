#!/usr/bin/env bash
# Train on one device (Ascend, GPU or CPU).
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: bash scripts/run_standalone_train.sh CONFIG DATA_DIR [DEVICE_TARGET] [DEVICE_ID] [train.py flags...]

  CONFIG         recipe, e.g. config/acmix_resnet50_imagenet.yaml
  DATA_DIR       data set root (ImageFolder: DATA_DIR/train/<class>/..., DATA_DIR/val/<class>/...)
  DEVICE_TARGET  CPU (default), GPU or Ascend
  DEVICE_ID      device index (default 0)
  flags          passed to train.py, e.g. --epochs 10 --output_dir outputs/r50 --resume auto

The log goes to <output_dir>/train.log (and to stdout).
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && { usage; exit 0; }
[[ $# -ge 2 ]] || die "CONFIG and DATA_DIR are required"
CONFIG="$1"; DATA_DIR="$2"; shift 2
DEVICE_TARGET=CPU; DEVICE_ID=0
if [[ $# -gt 0 && "$1" != --* ]]; then DEVICE_TARGET="$1"; shift; fi
if [[ $# -gt 0 && "$1" != --* ]]; then DEVICE_ID="$1"; shift; fi
need_file CONFIG "$CONFIG"
need_dir DATA_DIR "$DATA_DIR"
need_device "$DEVICE_TARGET"
need_int DEVICE_ID "$DEVICE_ID"
CONFIG="$(abspath "$CONFIG")"; DATA_DIR="$(abspath "$DATA_DIR")"

cd "$REPO_ROOT"
export DEVICE_ID
exec "$PYTHON" train.py --config "$CONFIG" --data_dir "$DATA_DIR" --device_target "$DEVICE_TARGET" "$@"
