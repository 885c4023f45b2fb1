"""Classify images with an exported MindIR and nothing else of this project: its sidecar JSON says it all.

``python classify_mindir.py model.mindir img1.jpg img2.png [--top_k 5] [--json]`` reads ``model.mindir.json``
(written by ``export.py`` next to the file), applies its preprocessing (resize of the short side, centre crop,
x / 255, mean and std, NCHW float32), runs the graph and prints the top-k classes with their probabilities.
Imports only MindSpore, NumPy, Pillow and the standard library, so it can be copied beside a model.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own logging: errors only

SCHEMA_VERSION = 1  # the sidecar schema this script reads


def load_sidecar(model_path: str) -> dict:
    """The sidecar of ``model_path``, checked to describe a classifier in a schema this script knows.

    Args:
        model_path: the ``.mindir`` file.
    """
    path = model_path + ".json"
    if not os.path.isfile(path):
        raise ValueError(f"no sidecar {path}: export.py writes it next to the .mindir; keep them together")
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {meta.get('schema_version')!r}, this script reads {SCHEMA_VERSION}")
    if meta["output"]["kind"] != "logits":
        raise ValueError(f"{model_path} outputs {meta['output']['kind']}, not class logits")
    return meta


def preprocess(image_path: str, spec: dict):
    """One image as a (C, H, W) float32 array, by the sidecar's preprocessing.

    Args:
        image_path: an image file Pillow decodes.
        spec: the sidecar's ``preprocessing`` section.
    """
    import numpy as np
    from mindspore.dataset import vision
    from PIL import Image

    if spec["channel_order"] != "RGB" or spec["pixel_scale"] != "x / 255":
        raise ValueError(f"unsupported preprocessing: {spec['channel_order']}, {spec['pixel_scale']}")
    inter = {"bilinear": vision.Inter.BILINEAR, "bicubic": vision.Inter.BICUBIC}[spec["interpolation"]]
    img = np.asarray(Image.open(image_path).convert("RGB"))
    img = vision.Resize(int(spec["resize_short_side"]), inter)(img)
    img = vision.CenterCrop(tuple(spec["crop_size"]))(img)
    x = img.astype(np.float32) / 255.0
    x = (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def classify(model_path: str, image_paths: list, top_k: int = 5) -> list:
    """[{"file", "top": [[class name, probability], ...]}] for each image.

    Args:
        model_path: the ``.mindir`` file, its sidecar beside it.
        image_paths: image files.
        top_k: classes listed per image.
    """
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor, nn

    meta = load_sidecar(model_path)
    names = meta["output"].get("class_names") or [str(i) for i in range(meta["output"]["num_classes"])]
    graph = nn.GraphCell(ms.load(model_path))
    x = np.stack([preprocess(p, meta["preprocessing"]) for p in image_paths])
    batch = meta["input"]["shape"][0]
    batch = len(x) if batch < 0 else batch  # a dynamic batch takes all images at once
    logits = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        padded = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], np.float32)])
        logits.append(graph(Tensor(padded)).asnumpy()[: len(chunk)])
    logits = np.concatenate(logits).astype(np.float64)
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    results = []
    for path, p in zip(image_paths, prob):
        top = np.argsort(-p, kind="stable")[: min(top_k, len(p))]
        results.append({"file": path, "top": [[names[i], float(p[i])] for i in top]})
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="exported .mindir; its sidecar <model>.json must be beside it")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top_k", type=int, default=5, help="classes shown per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON list")
    args = parser.parse_args(argv)
    try:
        results = classify(args.model, args.images, args.top_k)
    except (ValueError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(f"{r['file']}: " + ", ".join(f"{name} {p:.4f}" for name, p in r["top"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
