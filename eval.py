"""Evaluate a checkpoint or an exported MindIR, or classify image files.

``python eval.py --config RECIPE --checkpoint PATH`` prints and writes (``<output_dir>/eval.json``) top-1, top-5,
loss, the number of images and images/second on ``val_split``. ``PATH`` is a ``.ckpt`` (it must fit the model
exactly; a mismatch lists what does not fit) or an exported ``.mindir``.
``python eval.py --config RECIPE --checkpoint PATH --predict img1.png,folder/`` prints the top-5 classes of each
image, named from the ``class_names.json`` that training wrote beside the checkpoint.
"""

import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own logging: errors only


def main(argv=None) -> int:
    from src.checkpoint import CheckpointError
    from src.config import ConfigError, parse_config
    from src.data import DataError
    from src.exporter import ExportError

    try:
        cfg = parse_config(argv, required=("checkpoint",))
        from src.evaluator import predict_files, run_eval

        if cfg.predict:
            predict_files(cfg)
        else:
            parse_config(argv, required=("data_dir",))
            run_eval(cfg)
    except (ConfigError, DataError, CheckpointError, ExportError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
