"""The evaluation and inference runs behind ``eval.py``: checkpoints or exported MindIR files."""

from __future__ import annotations

import json
import os
from typing import Dict, List

import numpy as np

from .config import Config

__all__ = ["run_eval", "load_for_inference", "predict_files", "CLASS_NAMES_FILE"]

CLASS_NAMES_FILE = "class_names.json"  # written by training next to its checkpoints
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


def load_for_inference(cfg: Config):
    """The model of ``cfg.checkpoint``: a ``.mindir`` runs as exported, anything else is a strict checkpoint load.

    Args:
        cfg: config with ``checkpoint`` and the model keys.
    """
    if cfg.checkpoint.lower().endswith(".mindir"):
        from .exporter import load_mindir

        return load_mindir(cfg.checkpoint)
    from .checkpoint import load_model_weights
    from .models import create_model_from_config

    net = create_model_from_config(cfg)
    load_model_weights(net, cfg.checkpoint)
    net.set_train(False)
    return net


def run_eval(cfg: Config) -> Dict[str, float]:
    """Evaluate ``cfg.checkpoint`` on ``cfg.val_split``; prints the figures and writes ``eval.json``.

    Args:
        cfg: resolved config with ``checkpoint`` and the data keys.
    """
    from .data import check_dataset, create_dataset
    from .engine import evaluate
    from .env import init_env

    env = init_env(cfg.device_target, cfg.mode, cfg.seed, cfg.distribute, cfg.graph_kernel)
    check_dataset(cfg, cfg.val_split)
    net = load_for_inference(cfg)
    dataset, info = create_dataset(cfg, cfg.val_split, training=False, rank_size=env.rank_size, rank_id=env.rank_id)
    all_reduce = None
    if env.distributed:
        from mindspore import ops

        all_reduce = ops.AllReduce()
    result = evaluate(net, dataset.create_tuple_iterator(num_epochs=1), info.num_classes, all_reduce)
    result = {"model": cfg.model, "checkpoint": cfg.checkpoint, "split": cfg.val_split, **result}
    print(
        f"{cfg.model} on {info.root}: top-1 {result['top1']:.2f}% top-5 {result['top5']:.2f}% "
        f"loss {result['loss']:.4f} | {result['num_images']} images | {result['images_per_sec']:.1f} img/s"
    )
    if env.is_main:
        os.makedirs(cfg.output_dir, exist_ok=True)
        path = os.path.join(cfg.output_dir, "eval.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {path}")
    return result


def _image_files(paths: List[str]) -> List[str]:
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in sorted(os.walk(p)):
                files += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(_IMAGE_EXT)]
        elif os.path.isfile(p):
            files.append(p)
        else:
            from .data import DataError

            raise DataError(f"no such image file or folder: {p}")
    return files


def _class_names(cfg: Config) -> List[str]:
    if cfg.checkpoint.lower().endswith(".mindir"):
        from .exporter import read_export_meta

        names = read_export_meta(cfg.checkpoint).get("class_names")
        if names:
            return list(names)
    path = os.path.join(os.path.dirname(os.path.abspath(cfg.checkpoint)), CLASS_NAMES_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return list(json.load(f))
    return [str(i) for i in range(cfg.num_classes)]


def predict_files(cfg: Config) -> List[Dict]:
    """Top-5 classes and probabilities of every image in ``cfg.predict`` (files or folders).

    The images get the evaluation preprocessing (resize, center crop, normalisation); class names come from
    ``class_names.json`` beside the checkpoint (written by training), else class indices are shown.

    Args:
        cfg: config with ``checkpoint``, ``predict`` and the preprocessing keys.
    """
    from mindspore import Tensor
    from mindspore.dataset import transforms
    from PIL import Image

    from .data import DataError, eval_transforms
    from .env import init_env

    init_env(cfg.device_target, cfg.mode, cfg.seed, graph_kernel=cfg.graph_kernel)
    files = _image_files(cfg.predict)
    if not files:
        raise DataError(f"no images ({', '.join(_IMAGE_EXT)}) in {cfg.predict}")
    net = load_for_inference(cfg)
    names = _class_names(cfg)
    pipeline = transforms.Compose(eval_transforms(cfg))
    results = []
    for path in files:
        try:
            img = np.asarray(Image.open(path).convert("RGB"))
        except OSError as exc:
            raise DataError(f"cannot decode image {path}: {exc}") from exc
        x = np.asarray(pipeline(img), np.float32)[None]
        logits = net(Tensor(x)).asnumpy()[0].astype(np.float64)
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        top = np.argsort(-prob)[: min(5, len(prob))]
        results.append({"file": path, "top5": [(names[i] if i < len(names) else str(i), float(prob[i])) for i in top]})
        shown = ", ".join(f"{n} {p:.3f}" for n, p in results[-1]["top5"])
        print(f"{path}: {shown}")
    return results
