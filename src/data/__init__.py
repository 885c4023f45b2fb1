"""Data sets (ImageFolder / CIFAR-10 binary / bundled digits demo), transforms and mixup/cutmix."""

from ..errors import DataError
from .dataset import DatasetInfo, check_dataset, create_dataset
from .demo import prepare_digits
from .transforms import BatchAugment, eval_transforms, rand_augment, train_transforms

__all__ = [
    "BatchAugment",
    "DataError",
    "DatasetInfo",
    "check_dataset",
    "create_dataset",
    "eval_transforms",
    "prepare_digits",
    "rand_augment",
    "train_transforms",
]
