#!/usr/bin/env bash
# Export a checkpoint to MINDIR (any device), AIR (Ascend only) or ONNX, and verify the exported file.
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: bash scripts/run_export.sh CONFIG CHECKPOINT [FILE_FORMAT] [DEVICE_TARGET] [export.py flags...]

  CONFIG         the recipe the model was trained with
  CHECKPOINT     .ckpt of this project
  FILE_FORMAT    MINDIR (default), AIR (needs DEVICE_TARGET Ascend) or ONNX
  DEVICE_TARGET  CPU (default), GPU or Ascend
  flags          e.g. --export_batch_size 8 --img_size 224 --file_name out/model --force
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && { usage; exit 0; }
[[ $# -ge 2 ]] || die "CONFIG and CHECKPOINT are required"
CONFIG="$1"; CHECKPOINT="$2"; shift 2
FILE_FORMAT=MINDIR; DEVICE_TARGET=CPU
if [[ $# -gt 0 && "$1" != --* ]]; then FILE_FORMAT="$1"; shift; fi
if [[ $# -gt 0 && "$1" != --* ]]; then DEVICE_TARGET="$1"; shift; fi
need_file CONFIG "$CONFIG"
need_file CHECKPOINT "$CHECKPOINT"
case "$FILE_FORMAT" in MINDIR | AIR | ONNX) ;; *) die "FILE_FORMAT must be MINDIR, AIR or ONNX, got '$FILE_FORMAT'" ;; esac
need_device "$DEVICE_TARGET"
[[ "$FILE_FORMAT" != AIR || "$DEVICE_TARGET" == Ascend ]] || die "AIR export needs DEVICE_TARGET Ascend"
CONFIG="$(abspath "$CONFIG")"; CHECKPOINT="$(abspath "$CHECKPOINT")"
cd "$REPO_ROOT"
exec "$PYTHON" export.py --config "$CONFIG" --checkpoint "$CHECKPOINT" --file_format "$FILE_FORMAT" \
  --device_target "$DEVICE_TARGET" "$@"
