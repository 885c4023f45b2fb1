"""Learning-rate schedule, weight-decay groups and the optimizers of the recipes."""

from __future__ import annotations

import math
from typing import Dict, List

import numpy as np
from mindspore import Tensor, nn

__all__ = ["scaled_lr", "warmup_cosine_lr", "lr_schedule", "param_groups", "create_optimizer", "NO_DECAY_TAGS"]

# With weight_decay_params "weights", parameters that never decay besides every 0-/1-d tensor (norm scales and
# shifts, biases, the ACmix rates): position tables and the class token.
NO_DECAY_TAGS = ("pos_embed", "cls_token", "relative_position_bias_table", "rate1", "rate2")


def scaled_lr(lr: float, global_batch: int, lr_base_batch: int) -> float:
    """The linear scaling rule: ``lr`` is given for ``lr_base_batch`` images per step.

    Args:
        lr: learning rate of the recipe.
        global_batch: images per optimizer step over all devices.
        lr_base_batch: batch size the recipe's ``lr`` refers to; 0 disables the scaling.
    """
    return lr * global_batch / lr_base_batch if lr_base_batch > 0 else lr


def warmup_cosine_lr(
    base_lr: float, min_lr: float, warmup_lr: float, epochs: int, warmup_epochs: int, steps_per_epoch: int
) -> np.ndarray:
    """Per-step learning rates: linear warmup from ``warmup_lr`` to ``base_lr``, then cosine down to ``min_lr``.

    Args:
        base_lr: peak learning rate (already scaled).
        min_lr: final learning rate.
        warmup_lr: learning rate of the first step.
        epochs: total epochs.
        warmup_epochs: epochs of linear warmup (may be 0).
        steps_per_epoch: optimizer steps per epoch.
    """
    total = epochs * steps_per_epoch
    warm = min(warmup_epochs * steps_per_epoch, total)
    lrs = np.empty(total, np.float32)
    for i in range(total):
        if i < warm:
            lrs[i] = warmup_lr + (base_lr - warmup_lr) * i / warm
        else:
            t = (i - warm) / max(1, total - warm)
            lrs[i] = min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))
    return lrs


def lr_schedule(cfg, global_batch: int, steps_per_epoch: int) -> np.ndarray:
    """The recipe's per-step learning rates: :func:`warmup_cosine_lr` at the batch-scaled ``lr``.

    The warmup starts at ``warmup_start_factor`` times that scaled rate when the recipe sets it (the official
    ACmix-ResNet script starts at a quarter of its rate), so the start keeps its ratio to the peak at any batch;
    otherwise at the absolute ``warmup_lr``.

    Args:
        cfg: config with ``lr``, ``lr_base_batch``, ``min_lr``, ``warmup_lr``, ``warmup_start_factor``, ``epochs``,
            ``warmup_epochs``.
        global_batch: images per optimizer step over all devices.
        steps_per_epoch: optimizer steps per epoch.
    """
    base_lr = scaled_lr(cfg.lr, global_batch, cfg.lr_base_batch)
    start = cfg.warmup_lr if cfg.warmup_start_factor is None else cfg.warmup_start_factor * base_lr
    return warmup_cosine_lr(base_lr, cfg.min_lr, start, cfg.epochs, cfg.warmup_epochs, steps_per_epoch)


def param_groups(params: List, weight_decay: float, which: str = "weights") -> List[Dict]:
    """Optimizer groups: with ``which="weights"`` decayed weights, and norms/biases/position tables/ACmix rates
    without decay; with ``which="all"`` one group, every parameter decayed (PyTorch's ``SGD(model.parameters())``,
    as the official ACmix-ResNet script trains).

    Args:
        params: the trainable parameters.
        weight_decay: decay of the decayed group.
        which: ``"weights"`` or ``"all"`` (the recipe's ``weight_decay_params``).
    """
    if which == "all":
        return [{"params": list(params), "weight_decay": weight_decay}]
    if which != "weights":
        raise ValueError(f"weight_decay_params must be 'weights' or 'all', got {which!r}")
    decay, no_decay = [], []
    for p in params:
        if len(p.shape) <= 1 or any(tag in p.name for tag in NO_DECAY_TAGS):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def create_optimizer(cfg, params: List, lr_schedule: np.ndarray) -> nn.Optimizer:
    """The recipe's optimizer over ``params`` with a per-step learning rate (indexed by its ``global_step``).

    ``adamw`` is MindSpore's ``AdamWeightDecay``: decoupled weight decay like PyTorch's AdamW, but without the
    bias correction of the moments (the warmup covers the first steps, where that correction matters).

    Args:
        cfg: config with ``opt``, ``momentum``, ``nesterov``, ``betas``, ``eps``, ``weight_decay``,
            ``weight_decay_params``.
        params: trainable parameters.
        lr_schedule: learning rate of every step of the run.
    """
    groups = param_groups(params, cfg.weight_decay, cfg.weight_decay_params)
    lr = Tensor(lr_schedule)
    if cfg.opt == "sgd":
        return nn.Momentum(groups, learning_rate=lr, momentum=cfg.momentum, use_nesterov=cfg.nesterov)
    if cfg.opt == "adamw":
        beta1, beta2 = cfg.betas
        return nn.AdamWeightDecay(groups, learning_rate=lr, beta1=beta1, beta2=beta2, eps=cfg.eps)
    raise ValueError(f"unknown optimizer {cfg.opt!r}; expected 'sgd' or 'adamw'")
