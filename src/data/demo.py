"""The bundled demo data set: 1,797 real 8x8 handwritten digits (data/digits.npz) unpacked as an ImageFolder."""

from __future__ import annotations

import os
import shutil
from typing import Dict

import numpy as np
from PIL import Image

from ..errors import DataError

DIGITS_NPZ = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data", "digits.npz"
)
_MARKER = ".digits_demo"  # written into out_dir so that re-running only ever deletes its own output


def prepare_digits(out_dir: str, size: int = 32, source: str = DIGITS_NPZ) -> Dict[str, int]:
    """Write ``<out_dir>/{train,val}/<digit>/<index>.png`` (RGB, size x size) from the bundled digits.

    Grey levels 0..16 are scaled to 0..255 and upscaled with nearest neighbour, so every pixel is a real one
    (the training crops interpolate anyway). Re-running replaces the previous output; a train/ or val/ folder
    that this function did not write is left alone and reported as an error.

    Args:
        out_dir: output folder.
        size: image side in pixels (a multiple of 8 keeps the digit's pixels as equal squares).
        source: the .npz with images (N, 8, 8), labels, train_index and val_index.

    Returns:
        Images written per split, e.g. {"train": 1438, "val": 359}.
    """
    data = np.load(source, allow_pickle=False)
    images, labels = data["images"], data["labels"]
    splits = {"train": data["train_index"], "val": data["val_index"]}
    owned = os.path.isfile(os.path.join(out_dir, _MARKER))
    for split in splits:
        folder = os.path.join(out_dir, split)
        if os.path.isdir(folder) and os.listdir(folder) and not owned:
            raise DataError(f"{folder} exists and was not written by prepare_digits; choose another output folder")
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, _MARKER), "w") as marker:
        marker.write("written by src.data.prepare_digits from data/digits.npz\n")
    grey = np.round(images.astype(np.float32) * (255.0 / 16.0)).astype(np.uint8)
    counts = {}
    for split, index in splits.items():
        for digit in np.unique(labels):
            os.makedirs(os.path.join(out_dir, split, str(digit)), exist_ok=True)
        for i in index:
            image = Image.fromarray(grey[i], "L").resize((size, size), Image.NEAREST).convert("RGB")
            image.save(os.path.join(out_dir, split, str(labels[i]), f"{i:04d}.png"))
        counts[split] = int(len(index))
    return counts
