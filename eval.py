"""Evaluate a checkpoint: ``python eval.py --config config/<recipe>.yaml --checkpoint PATH [--key value ...]``.

Prints and writes (``<output_dir>/eval.json``) top-1, top-5, loss, the number of images and images/second on
``val_split``. The checkpoint must fit the model exactly; a mismatch lists what does not fit.
"""

import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own logging: errors only


def main(argv=None) -> int:
    from src.checkpoint import CheckpointError
    from src.config import ConfigError, parse_config
    from src.data import DataError

    try:
        cfg = parse_config(argv, required=("data_dir", "checkpoint"))
        from src.evaluator import run_eval

        run_eval(cfg)
    except (ConfigError, DataError, CheckpointError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
