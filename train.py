"""Train an ACmix backbone: ``python train.py --config config/<recipe>.yaml [--key value ...]``.

Every recipe key can be overridden on the command line (``python train.py -h`` lists them). Outputs go to
``output_dir``: the resolved ``config.yaml``, ``train.log``, ``metrics.jsonl``, ``curves.png``, the last
``keep_checkpoints`` epoch checkpoints and ``<model>_best.ckpt``. ``--resume auto`` continues the newest one.
"""

import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own logging: errors only


def main(argv=None) -> int:
    from src.checkpoint import CheckpointError
    from src.config import ConfigError, parse_config
    from src.data import DataError

    try:
        cfg = parse_config(argv, required=("data_dir",))
        from src.trainer import train

        train(cfg)
    except (ConfigError, DataError, CheckpointError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
