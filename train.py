"""Train an ACmix backbone: ``python train.py --config config/<recipe>.yaml [--key value ...]``.

Every recipe key can be overridden on the command line (``python train.py -h`` lists them). Outputs go to
``output_dir``: the resolved ``config.yaml``, ``train.log``, ``metrics.jsonl``, ``curves.png``, the last
``keep_checkpoints`` epoch checkpoints and ``<model>_best.ckpt``. A folder that already holds a run is refused
unless ``--resume auto`` (continue it) or ``--force`` (start over) says what to do with it.
"""

import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own logging: errors only


def _train(argv) -> None:
    from src.config import parse_config

    cfg = parse_config(argv, required=("data_dir",))
    from src.trainer import train  # MindSpore loads only once the arguments are known to be good

    train(cfg)


def main(argv=None) -> int:
    from src.errors import run_command

    return run_command(lambda: _train(argv))


if __name__ == "__main__":
    sys.exit(main())
