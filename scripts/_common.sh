#!/usr/bin/env bash
# Shared checks of the launchers (sourced, not run). Every failure prints the launcher's usage and exits 2.

die() {
  echo "error: $*" >&2
  echo >&2
  usage >&2
  exit 2
}

need_file() { [[ -f "$2" ]] || die "$1 '$2' is not a file"; }
need_dir() { [[ -d "$2" ]] || die "$1 '$2' is not a directory"; }
need_int() { [[ "$2" =~ ^[0-9]+$ ]] && (( $2 >= ${3:-0} )) || die "$1 must be an integer >= ${3:-0}, got '$2'"; }
need_device() {
  case "$1" in CPU | GPU | Ascend) ;; *) die "DEVICE_TARGET must be CPU, GPU or Ascend, got '$1'" ;; esac
}

# The repository root, so launchers work from any directory without copying the source tree anywhere.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

abspath() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
