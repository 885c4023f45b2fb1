"""Export a checkpoint: ``python export.py --config RECIPE --checkpoint PATH [--file_format MINDIR|AIR|ONNX]``.

Writes ``<output_dir>/<model>_<B>x<C>x<S>x<S>.<ext>`` (or ``--file_name``), refuses to overwrite without
``--force``, and the sidecar ``<file>.json`` describing its input, preprocessing and output (docs/export.md); then
reloads the file and prints the largest difference from the checkpoint's output.
"""

import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own logging: errors only


def _export(argv) -> None:
    from src.config import parse_config

    cfg = parse_config(argv, required=("checkpoint",))
    from src.exporter import export_model  # MindSpore loads only once the arguments are known to be good

    export_model(cfg)


def main(argv=None) -> int:
    from src.errors import run_command

    return run_command(lambda: _export(argv))


if __name__ == "__main__":
    sys.exit(main())
