"""Per-image transforms (MindSpore vision ops) and the batch-level numpy op: erasing, soft labels, mixup/cutmix."""

from __future__ import annotations

import math
import re
from typing import Any, List, Tuple

import numpy as np
from mindspore.dataset import vision
from mindspore.dataset.vision import Inter

from ..errors import DataError

_INTERPOLATION = {"bilinear": Inter.BILINEAR, "bicubic": Inter.BICUBIC}


def interpolation(name: str) -> Inter:
    """MindSpore interpolation mode for a config name.

    Args:
        name: "bilinear" or "bicubic".
    """
    if name not in _INTERPOLATION:
        raise DataError(f"interpolation {name!r} is not one of {sorted(_INTERPOLATION)}")
    return _INTERPOLATION[name]


def rand_augment(spec: str, interp: Inter, fill: Tuple[int, int, int]) -> vision.RandAugment:
    """MindSpore's RandAugment for a timm-style spec such as ``"rand-m9-mstd0.5-inc1"``.

    MindSpore's op set and magnitudes are torchvision's: 14 ops including Identity, magnitudes signed at random
    and, for Posterize and Solarize, increasing in severity, which is what timm's ``inc1`` selects. ``m`` (timm's
    0..10 scale) becomes bin ``m`` of 11, so the strength is m/10 of each op's maximum as in timm. Not
    reproducible with this API: ``mstd`` (timm's per-application Gaussian noise on the magnitude; ignored),
    ``inc0``, timm's 0.5 probability of applying each chosen op, its Invert and SolarizeAdd ops, and timm's
    larger translation (0.45 of the size against 150/331 here). Other keys (``mmax``, ``p``, ``w``) are refused.

    Args:
        spec: the timm-style string; it must start with ``rand``.
        interp: interpolation of the geometric ops.
        fill: RGB value for pixels outside the transformed image.
    """
    parts = spec.split("-")
    if parts[0] != "rand":
        raise DataError(f"auto_augment {spec!r}: only RandAugment specs ('rand-m9-n2-mstd0.5-inc1') are supported")
    magnitude, num_ops = 9.0, 2
    for part in parts[1:]:
        match = re.fullmatch(r"([a-z]+)([0-9.]+)", part)
        if match is None or match.group(1) not in ("m", "n", "mstd", "inc"):
            raise DataError(f"auto_augment {spec!r}: unsupported part {part!r} (known: m, n, mstd, inc)")
        key, value = match.group(1), float(match.group(2))
        if key == "m":
            magnitude = value
        elif key == "n":
            num_ops = int(value)
    # MindSpore refuses magnitude 0; bin 0 would be the identity anyway, so 1 is the closest it allows.
    level = min(10, max(1, round(magnitude)))
    return vision.RandAugment(num_ops, level, num_magnitude_bins=11, interpolation=interp, fill_value=fill)


def _normalize(cfg: Any) -> List[Any]:
    # Normalising uint8 HWC with mean/std in 0..255 units equals ToTensor + Normalize, in one op.
    mean = [255.0 * m for m in cfg.mean]
    std = [255.0 * s for s in cfg.std]
    return [vision.Normalize(mean, std), vision.HWC2CHW()]


def train_transforms(cfg: Any) -> List[Any]:
    """Training ops on a decoded RGB uint8 HWC image; the output is a float32 CHW image.

    Colour jitter is skipped when ``auto_augment`` is set, as timm's transform factory (which the official
    Swin/ACmix recipes use) does.

    Args:
        cfg: the configuration (train_crop, img_size, scale, ratio, crop_padding, hflip, color_jitter,
            auto_augment, interpolation, mean, std).
    """
    size, interp = int(cfg.img_size), interpolation(cfg.interpolation)
    if cfg.train_crop == "random_resized":
        ops = [vision.RandomResizedCrop(size, tuple(cfg.scale), tuple(cfg.ratio), interpolation=interp)]
    elif cfg.train_crop == "random_crop":
        ops = [vision.Resize(size, interp), vision.RandomCrop(size, padding=int(cfg.crop_padding) or None)]
    elif cfg.train_crop == "none":
        ops = [vision.Resize((size, size), interp)]
    else:
        raise DataError(f"train_crop {cfg.train_crop!r} is not one of 'random_resized', 'random_crop', 'none'")
    if cfg.hflip > 0:
        ops.append(vision.RandomHorizontalFlip(float(cfg.hflip)))
    if cfg.auto_augment:
        fill = tuple(int(round(255 * m)) for m in cfg.mean)
        ops.append(rand_augment(cfg.auto_augment, interp, fill))
    elif cfg.color_jitter > 0:
        lo, hi = max(0.0, 1.0 - cfg.color_jitter), 1.0 + cfg.color_jitter
        ops.append(vision.RandomColorAdjust(brightness=(lo, hi), contrast=(lo, hi), saturation=(lo, hi)))
    return ops + _normalize(cfg)


def eval_transforms(cfg: Any) -> List[Any]:
    """Evaluation ops: shorter side to int(img_size / crop_pct), centre crop, normalise, CHW.

    Args:
        cfg: the configuration (img_size, crop_pct, interpolation, mean, std).
    """
    size = int(cfg.img_size)
    resize = vision.Resize(int(size / cfg.crop_pct), interpolation(cfg.interpolation))
    return [resize, vision.CenterCrop(size)] + _normalize(cfg)


class BatchAugment:
    """Batch op on numpy (B, C, H, W) images and (B,) labels: random erasing, then soft labels and mixup/cutmix.

    It runs after batching through ``dataset.map`` with one worker, so its own generator makes runs reproducible.
    Erasing fills a box (area 2-33%, aspect 0.3-3.3) with standard-normal noise, i.e. random pixels in normalised
    units. With mixup or cutmix on, labels become smoothed one-hot rows (off = smoothing / classes,
    on = 1 - smoothing + off); with probability ``prob`` a batch is mixed with its reverse, by cutmix with
    probability ``switch_prob`` when both are on, with lam ~ Beta(alpha, alpha), corrected to the box area for cutmix.

    Args:
        num_classes: label width of the soft targets.
        reprob: per-image erasing probability.
        mixup: mixup alpha (0 = off).
        cutmix: cutmix alpha (0 = off).
        prob: probability that a batch is mixed.
        switch_prob: probability of cutmix when both are on.
        smoothing: label smoothing of the soft targets.
        seed: seed of the generator.
    """

    def __init__(
        self,
        num_classes: int,
        reprob: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        smoothing: float = 0.0,
        seed: Any = 0,
    ) -> None:
        self.num_classes, self.reprob, self.mixup, self.cutmix = num_classes, reprob, mixup, cutmix
        self.prob, self.switch_prob, self.smoothing = prob, switch_prob, smoothing
        self.soft_labels = mixup > 0 or cutmix > 0
        self.active = self.soft_labels or reprob > 0
        self.rng = np.random.default_rng(seed)

    def _erase(self, image: np.ndarray) -> None:
        _, h, w = image.shape
        for _ in range(10):
            area = self.rng.uniform(0.02, 1 / 3) * h * w
            aspect = math.exp(self.rng.uniform(math.log(0.3), math.log(3.3)))
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < eh < h and 0 < ew < w:
                top, left = self.rng.integers(0, h - eh + 1), self.rng.integers(0, w - ew + 1)
                image[:, top : top + eh, left : left + ew] = self.rng.standard_normal((image.shape[0], eh, ew))
                return

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        images = np.array(images, dtype=np.float32)  # a writable copy
        for image in images:
            if self.reprob > 0 and self.rng.random() < self.reprob:
                self._erase(image)
        if not self.soft_labels:
            return images, labels
        off = self.smoothing / self.num_classes
        target = np.full((len(labels), self.num_classes), off, np.float32)
        target[np.arange(len(labels)), labels.astype(np.int64)] = 1.0 - self.smoothing + off
        if self.rng.random() >= self.prob:
            return images, target
        use_cutmix = self.cutmix > 0 and (self.mixup <= 0 or self.rng.random() < self.switch_prob)
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(self.rng.beta(alpha, alpha))
        partner = images[::-1].copy()
        if use_cutmix:
            h, w = images.shape[2:]
            cut = math.sqrt(1.0 - lam)
            cy, cx = self.rng.integers(0, h), self.rng.integers(0, w)
            y0, y1 = np.clip([cy - int(h * cut) // 2, cy + int(h * cut) // 2], 0, h)
            x0, x1 = np.clip([cx - int(w * cut) // 2, cx + int(w * cut) // 2], 0, w)
            images[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
            lam = 1.0 - float((y1 - y0) * (x1 - x0)) / (h * w)
        else:
            images = lam * images + (1.0 - lam) * partner
        target = lam * target + (1.0 - lam) * target[::-1]
        return images.astype(np.float32), target.astype(np.float32)
