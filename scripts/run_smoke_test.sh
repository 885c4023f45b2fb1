#!/usr/bin/env bash
# The first thing to run on a new host: demo training, evaluation, export and prediction in the device's default
# mode, plus one ACmix-ResNet-50 and one ACmix-Swin-T train step at 224; prints a table to paste into a bug report.
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: bash scripts/run_smoke_test.sh [DEVICE_TARGET] [DEVICE_ID] [smoke_test.py flags...]

  DEVICE_TARGET  CPU (default), GPU or Ascend
  DEVICE_ID      device index (default 0)
  flags          e.g. --output_dir /tmp/smoke --batch 16 --steps 5

Ascend and GPU run with data sinking and fp16 (amp O2, dynamic loss scale), as the ImageNet recipes do there;
Ascend also exports AIR. Prints one table and writes it as JSON (<output_dir>/smoke.json).
Takes a few minutes; on 2 CPU cores about 6 minutes. Exit code 0 when every step passed.
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && { usage; exit 0; }
DEVICE_TARGET=CPU; DEVICE_ID=0
if [[ $# -gt 0 && "$1" != --* ]]; then DEVICE_TARGET="$1"; shift; fi
if [[ $# -gt 0 && "$1" != --* ]]; then DEVICE_ID="$1"; shift; fi
need_device "$DEVICE_TARGET"
need_int DEVICE_ID "$DEVICE_ID"

cd "$REPO_ROOT"
export DEVICE_ID
exec "$PYTHON" scripts/smoke_test.py --device_target "$DEVICE_TARGET" "$@"
