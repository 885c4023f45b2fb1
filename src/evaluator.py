"""The evaluation and inference runs behind ``eval.py``: checkpoints or exported MindIR files."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping

import numpy as np

from .config import Config

__all__ = [
    "run_eval",
    "load_for_inference",
    "predict_files",
    "eval_preprocessing",
    "preprocess_ops",
    "CLASS_NAMES_FILE",
]

CLASS_NAMES_FILE = "class_names.json"  # written by training next to its checkpoints
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


def eval_preprocessing(cfg: Config) -> Dict[str, Any]:
    """The evaluation preprocessing of ``cfg`` as plain values: what ``eval_transforms`` does, for the export sidecar.

    ``src/data/transforms.eval_transforms`` builds the evaluation dataset from the same keys with the same rule
    (short side to ``int(img_size / crop_pct)``); a test checks that :func:`preprocess_ops` of this dict and
    ``eval_transforms(cfg)`` give identical arrays.

    Args:
        cfg: config with ``img_size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``, ``in_chans``.
    """
    size = int(cfg.img_size)
    return {
        "channel_order": "RGB",
        "resize_short_side": int(size / cfg.crop_pct),
        "interpolation": cfg.interpolation,
        "crop_size": [size, size],
        "crop_pct": float(cfg.crop_pct),
        "pixel_scale": "x / 255",
        "mean": [float(m) for m in cfg.mean],
        "std": [float(s) for s in cfg.std],
        "steps": [
            "decode to RGB uint8 HWC",
            "resize the short side to resize_short_side (aspect kept, long side int(long * resize / short)), "
            "result rounded to uint8",
            "centre crop crop_size [height, width] at top (H - height) // 2, left (W - width) // 2",
            "x / 255, then (x - mean) / std per channel, float32",
            "HWC to CHW, add the batch axis: NCHW",
        ],
        "reference_ops": "mindspore.dataset.vision Resize, CenterCrop, Normalize, HWC2CHW",
    }


def preprocess_ops(spec: Mapping[str, Any]) -> List[Any]:
    """MindSpore vision ops applying a preprocessing dict of :func:`eval_preprocessing` (or of a sidecar).

    Args:
        spec: ``resize_short_side``, ``interpolation``, ``crop_size``, ``mean``, ``std``.
    """
    from mindspore.dataset import vision

    from .data.transforms import interpolation

    # uint8 normalised with mean and std in 0..255 units is x / 255 followed by (x - mean) / std
    return [
        vision.Resize(int(spec["resize_short_side"]), interpolation(spec["interpolation"])),
        vision.CenterCrop(tuple(int(v) for v in spec["crop_size"])),
        vision.Normalize([255.0 * m for m in spec["mean"]], [255.0 * s for s in spec["std"]]),
        vision.HWC2CHW(),
    ]


def load_for_inference(cfg: Config):
    """The model of ``cfg.checkpoint``: a ``.mindir`` runs as exported, anything else is a strict checkpoint load.

    Args:
        cfg: config with ``checkpoint`` and the model keys.
    """
    if _is_mindir(cfg):
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


def _is_mindir(cfg: Config) -> bool:
    return cfg.checkpoint.lower().endswith(".mindir")


def _class_names(cfg: Config) -> List[str]:
    path = os.path.join(os.path.dirname(os.path.abspath(cfg.checkpoint)), CLASS_NAMES_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return list(json.load(f))
    return [str(i) for i in range(cfg.num_classes)]


def _prediction_setup(cfg: Config):
    """(preprocessing dict, class names) of the model in ``cfg.checkpoint``.

    An exported MindIR is described by its sidecar alone: its preprocessing and classes are what the export run
    used, whatever the current recipe says; a MindIR without a sidecar falls back to the recipe, with a warning.
    """
    if not _is_mindir(cfg):
        return eval_preprocessing(cfg), _class_names(cfg)
    from .exporter import read_export_meta, sidecar_path

    meta = read_export_meta(cfg.checkpoint)
    if "preprocessing" not in meta:
        print(f"warning: no sidecar {sidecar_path(cfg.checkpoint)}; preprocessing and classes from the recipe")
        return eval_preprocessing(cfg), _class_names(cfg)
    output = meta["output"]
    if output["kind"] != "logits":
        from .exporter import ExportError

        raise ExportError(f"{cfg.checkpoint} outputs {output['kind']}, not class logits: --predict needs a classifier")
    names = output.get("class_names") or [str(i) for i in range(int(output["num_classes"]))]
    return meta["preprocessing"], list(names)


def predict_files(cfg: Config) -> List[Dict]:
    """Top-5 classes and probabilities of every image in ``cfg.predict`` (files or folders).

    A checkpoint gets the recipe's evaluation preprocessing (:func:`eval_preprocessing`) and the class names of
    ``class_names.json`` beside it (written by training); an exported MindIR gets the preprocessing and class
    names of its sidecar JSON. Without names, class indices are shown.

    Args:
        cfg: config with ``checkpoint``, ``predict`` and the preprocessing keys.
    """
    from mindspore import Tensor
    from mindspore.dataset import transforms
    from PIL import Image

    from .data import DataError
    from .env import init_env

    init_env(cfg.device_target, cfg.mode, cfg.seed, graph_kernel=cfg.graph_kernel)
    files = _image_files(cfg.predict)
    if not files:
        raise DataError(f"no images ({', '.join(_IMAGE_EXT)}) in {cfg.predict}")
    spec, names = _prediction_setup(cfg)
    net = load_for_inference(cfg)
    pipeline = transforms.Compose(preprocess_ops(spec))
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
        top = np.argsort(-prob, kind="stable")[: min(5, len(prob))]
        results.append({"file": path, "top5": [(names[i] if i < len(names) else str(i), float(prob[i])) for i in top]})
        shown = ", ".join(f"{n} {p:.3f}" for n, p in results[-1]["top5"])
        print(f"{path}: {shown}")
    return results
