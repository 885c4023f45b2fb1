"""The evaluation run behind ``eval.py``."""

from __future__ import annotations

import json
import os
from typing import Dict

from .config import Config

__all__ = ["run_eval"]


def run_eval(cfg: Config) -> Dict[str, float]:
    """Evaluate ``cfg.checkpoint`` on ``cfg.val_split``; prints the figures and writes ``eval.json``.

    Args:
        cfg: resolved config with ``checkpoint`` and the data keys.
    """
    from .checkpoint import load_model_weights
    from .data import check_dataset, create_dataset
    from .engine import evaluate
    from .env import init_env
    from .models import create_model_from_config

    env = init_env(cfg.device_target, cfg.mode, cfg.seed, cfg.distribute)
    check_dataset(cfg, cfg.val_split)
    net = create_model_from_config(cfg)
    load_model_weights(net, cfg.checkpoint)
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
