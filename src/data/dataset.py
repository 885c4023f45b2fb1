"""Checked data sets: ImageFolder (ImageNet layout) and CIFAR-10 binary, sharded, augmented and batched."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore.dataset import transforms

from ..errors import DataError
from .transforms import BatchAugment, eval_transforms, train_transforms

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_RECORD = 1 + 32 * 32 * 3  # label byte, then the R, G and B planes


@dataclass
class DatasetInfo:
    """What ``check_dataset`` found in one split.

    Args:
        num_classes: classes found.
        num_images: images in the split (all shards).
        class_names: class names in label order.
        root: the split folder (ImageFolder) or the folder holding the CIFAR-10 binaries.
        soft_labels: whether ``create_dataset`` yields (B, num_classes) float32 targets instead of int32 labels.
        extensions: image file extensions present, spelt as found (ImageFolder).
        files: the CIFAR-10 binary files of the split.
    """

    num_classes: int
    num_images: int
    class_names: List[str]
    root: str
    soft_labels: bool = False
    extensions: Tuple[str, ...] = ()
    files: Tuple[str, ...] = field(default=(), repr=False)


def _check_image_folder(data_dir: str, split: str) -> DatasetInfo:
    root = os.path.join(data_dir, split)
    if not os.path.isdir(root):
        raise DataError(f"split folder {root} does not exist")
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    num_images, extensions = 0, set()
    for name in classes:
        with os.scandir(os.path.join(root, name)) as entries:
            for entry in entries:
                ext = os.path.splitext(entry.name)[1]
                if ext.lower() in IMAGE_EXTENSIONS and entry.is_file():
                    num_images += 1
                    extensions.add(ext)
    if num_images == 0:
        raise DataError(
            f"split folder {root} has no images (expected {root}/<class>/<name>{'|'.join(IMAGE_EXTENSIONS)})"
        )
    return DatasetInfo(len(classes), num_images, classes, root, extensions=tuple(sorted(extensions)))


def _check_cifar10(data_dir: str, split: str) -> DatasetInfo:
    nested = os.path.join(data_dir, "cifar-10-batches-bin")
    base = nested if os.path.isdir(nested) else data_dir
    if split == "train":
        names = [f"data_batch_{i}.bin" for i in range(1, 6)]
    elif split in ("val", "test"):
        names = ["test_batch.bin"]
    else:
        raise DataError(f"CIFAR-10 has no split {split!r} (use 'train', 'val' or 'test')")
    files = [os.path.join(base, n) for n in names]
    missing = [n for n, f in zip(names, files) if not os.path.isfile(f)]
    if missing:
        raise DataError(f"CIFAR-10 binary files missing in {base}: {', '.join(missing)}")
    num_images = 0
    for f in files:
        size = os.path.getsize(f)
        if size == 0 or size % CIFAR_RECORD:
            raise DataError(f"{f} has {size} bytes, not a positive multiple of the {CIFAR_RECORD}-byte CIFAR-10 record")
        num_images += size // CIFAR_RECORD
    return DatasetInfo(10, num_images, list(CIFAR10_CLASSES), base, files=tuple(files))


def check_dataset(cfg: Any, split: str) -> DatasetInfo:
    """Validate one split of the configured data set without building a pipeline.

    Args:
        cfg: the configuration (dataset, data_dir, num_classes).
        split: the split folder name (CIFAR-10: "train", or "val"/"test" for the test batch).
    """
    data_dir = str(cfg.data_dir)
    if not os.path.isdir(data_dir):
        raise DataError(f"data_dir {data_dir} does not exist or is not a directory")
    if cfg.dataset == "imagefolder":
        info = _check_image_folder(data_dir, split)
    elif cfg.dataset == "cifar10":
        info = _check_cifar10(data_dir, split)
    else:
        raise DataError(f"dataset {cfg.dataset!r} is not one of 'imagefolder', 'cifar10'")
    if info.num_classes != cfg.num_classes:
        shown = ", ".join(info.class_names[:12]) + (", ..." if info.num_classes > 12 else "")
        raise DataError(
            f"{info.root} has {info.num_classes} classes but num_classes is {cfg.num_classes} (found: {shown})"
        )
    return info


class _CifarRecords:
    """Random access to CIFAR-10 binary records as (HWC uint8 image, int32 label); any record count."""

    def __init__(self, files: Tuple[str, ...]) -> None:
        raw = np.concatenate([np.fromfile(f, np.uint8).reshape(-1, CIFAR_RECORD) for f in files])
        self.labels = raw[:, 0].astype(np.int32)
        self.images = np.ascontiguousarray(raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))

    def __getitem__(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.images[index], np.array(self.labels[index])

    def __len__(self) -> int:
        return len(self.labels)


def create_dataset(
    cfg: Any,
    split: str,
    training: bool,
    rank_size: int = 1,
    rank_id: int = 0,
    drop_remainder: Optional[bool] = None,
) -> Tuple[ds.Dataset, DatasetInfo]:
    """Build the batched pipeline of one split: columns "image" (B, 3, S, S) float32 and "label".

    Sets MindSpore's global dataset seed to ``cfg.seed`` so shuffling and random ops are reproducible.
    A file that fails to decode stops iteration with MindSpore's RuntimeError, which names the file
    (MindSpore also copies the file to ./abnormal_image.jpg).
    Sharded evaluation gives rank r the images r, r + rank_size, ... (no padding, so summed counts are exact);
    sharded training uses MindSpore's shards, which repeat a few images when rank_size does not divide the split.

    Args:
        cfg: the configuration (see ``check_dataset``, ``train_transforms``, ``BatchAugment``; plus seed,
            num_workers, batch_size, eval_batch_size, steps_per_epoch and the mixup/cutmix keys).
        split: the split folder name.
        training: training transforms, shuffling, batch augmentation and ``steps_per_epoch``; else evaluation.
        rank_size: number of shards (data-parallel devices).
        rank_id: this device's shard.
        drop_remainder: drop a last incomplete batch; default True for training, False for evaluation.
    """
    info = check_dataset(cfg, split)
    if not 0 <= rank_id < rank_size:
        raise DataError(f"rank_id {rank_id} is outside 0..{rank_size - 1}")
    ds.config.set_seed(int(cfg.seed))
    shard = {"num_shards": rank_size, "shard_id": rank_id} if rank_size > 1 else {}
    if rank_size > 1 and not training:
        # MindSpore's shards pad themselves to equal length with repeated images; evaluation must count each
        # image once, so every rank takes every rank_size-th image instead (uneven shards are summed by count).
        shard = {"sampler": ds.SubsetSampler(list(range(rank_id, info.num_images, rank_size)))}
    # MindSpore refuses more workers than CPUs; a recipe written for a big host should still run here.
    workers = max(1, min(int(cfg.num_workers), os.cpu_count() or 1))
    if cfg.dataset == "cifar10":
        # Own reader: MindSpore's Cifar10Dataset insists on exactly 10,000 records per file.
        data = ds.GeneratorDataset(
            _CifarRecords(info.files),
            ["image", "label"],
            shuffle=(training and cfg.shuffle) if "sampler" not in shard else None,
            python_multiprocessing=False,
            **shard,
        )
    else:
        # Decoding in the loader: a broken file stops the pipeline with "Invalid image, <path> decode failed".
        indexing = {name: i for i, name in enumerate(info.class_names)}
        data = ds.ImageFolderDataset(
            info.root, num_parallel_workers=workers, extensions=list(info.extensions),
            shuffle=(training and cfg.shuffle) if "sampler" not in shard else None,
            class_indexing=indexing, decode=True, **shard,
        )  # fmt: skip
    ops = train_transforms(cfg) if training else eval_transforms(cfg)
    data = data.map(ops, input_columns="image", num_parallel_workers=workers)
    data = data.map(transforms.TypeCast(ms.int32), input_columns="label")
    batch_size = int(cfg.batch_size if training or not cfg.eval_batch_size else cfg.eval_batch_size)
    drop = training if drop_remainder is None else drop_remainder
    per_shard = -(-info.num_images // rank_size)
    if drop and per_shard < batch_size:
        raise DataError(f"{info.root}: {per_shard} images per shard, fewer than one batch of {batch_size}")
    data = data.batch(batch_size, drop_remainder=drop)
    if training:
        aug = BatchAugment(
            cfg.num_classes, cfg.reprob, cfg.mixup, cfg.cutmix, cfg.mixup_prob, cfg.mixup_switch_prob,
            cfg.label_smoothing, seed=[int(cfg.seed), rank_id],
        )  # fmt: skip
        if aug.active:
            data = data.map(aug, input_columns=["image", "label"], num_parallel_workers=1)
            info.soft_labels = aug.soft_labels
        if cfg.steps_per_epoch > 0:
            data = data.take(int(cfg.steps_per_epoch))
    return data, info
