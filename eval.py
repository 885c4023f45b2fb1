"""Evaluate a checkpoint or an exported MindIR, or classify image files.

``python eval.py --config RECIPE --checkpoint PATH`` prints and writes (``<output_dir>/eval.json``) top-1, top-5,
loss, the number of images and images/second on ``val_split``. ``PATH`` is a ``.ckpt`` (it must fit the model
exactly; a mismatch lists what does not fit) or an exported ``.mindir``.
``python eval.py --config RECIPE --checkpoint PATH --predict img1.png,folder/`` prints the top-5 classes of each
image, named from the ``class_names.json`` that training wrote beside the checkpoint; a ``.mindir`` is preprocessed
and named by its sidecar JSON (docs/export.md).
"""

import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own logging: errors only


def _eval(argv) -> None:
    from src.config import parse_config

    cfg = parse_config(argv, required=("checkpoint",))
    if not cfg.predict:
        parse_config(argv, required=("data_dir",))
    from src.evaluator import predict_files, run_eval  # MindSpore loads only once the arguments are known to be good

    predict_files(cfg) if cfg.predict else run_eval(cfg)


def main(argv=None) -> int:
    from src.errors import run_command

    return run_command(lambda: _eval(argv))


if __name__ == "__main__":
    sys.exit(main())
