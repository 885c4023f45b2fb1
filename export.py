"""Export a checkpoint: ``python export.py --config RECIPE --checkpoint PATH [--file_format MINDIR|AIR|ONNX]``.

Writes ``<output_dir>/<model>_<B>x<C>x<S>x<S>.<ext>`` (or ``--file_name``), refuses to overwrite without
``--force``, then reloads the file and prints the largest difference from the checkpoint's output.
"""

import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own logging: errors only


def main(argv=None) -> int:
    from src.checkpoint import CheckpointError
    from src.config import ConfigError, parse_config
    from src.exporter import ExportError, export_model

    try:
        cfg = parse_config(argv, required=("checkpoint",))
        export_model(cfg)
    except (ConfigError, CheckpointError, ExportError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
