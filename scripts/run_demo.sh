#!/usr/bin/env bash
# The main job on the bundled real data: unpack the digits, train a small ACmix-ResNet on CPU, evaluate the
# saved checkpoint, export it to MindIR (verified by reloading), and classify a few held-out images.
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: bash scripts/run_demo.sh [OUTPUT_DIR] [train.py flags...]

  OUTPUT_DIR  where checkpoints, logs, curves and the export go (default outputs/demo_digits)
  flags       passed to train.py, e.g. --epochs 2
A demo is meant to be re-run: training passes --force, so each run starts over in OUTPUT_DIR (the previous
run's checkpoints, metrics, plot and log there are removed; train.py alone refuses such a folder).
Takes about 4 minutes on 2 CPU cores; prints the validation top-1 of training and of eval.py.
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && { usage; exit 0; }
OUT="outputs/demo_digits"
if [[ $# -gt 0 && "$1" != --* ]]; then OUT="$1"; shift; fi
cd "$REPO_ROOT"
CONFIG=config/demo_digits.yaml

"$PYTHON" scripts/prepare_demo_data.py --out data/digits
"$PYTHON" train.py --config "$CONFIG" --output_dir "$OUT" --force "$@"
# the checkpoint of the last epoch: its accuracy is the last validation of the run
CKPT="$(printf '%s\n' "$OUT"/*_epoch*.ckpt | sort -V | tail -n 1)"
"$PYTHON" eval.py --config "$OUT/config.yaml" --checkpoint "$CKPT" --output_dir "$OUT"
"$PYTHON" export.py --config "$OUT/config.yaml" --checkpoint "$CKPT" --output_dir "$OUT" --force
MINDIRS=("$OUT"/*.mindir)
MINDIR="${MINDIRS[0]}"
SAMPLES=(data/digits/val/3/*.png)
"$PYTHON" eval.py --config "$OUT/config.yaml" --checkpoint "$MINDIR" --output_dir "$OUT" \
  --predict "$(IFS=,; echo "${SAMPLES[*]:0:3}")"
echo "demo done: training log $OUT/train.log, curves $OUT/curves.png, metrics $OUT/eval.json, model $MINDIR"
