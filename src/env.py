"""Device, execution mode, seeds and the data-parallel context: the one place for version-dependent MindSpore calls.

Everything here runs when a command starts, never at import time.  MindSpore 2.7-2.10 all provide
``ms.set_device``; older releases only take ``device_target`` through ``set_context``, which is the fallback.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np

__all__ = ["RunEnv", "init_env"]


@dataclass(frozen=True)
class RunEnv:
    """What a command needs to know about the process it runs in.

    Args:
        device_target: "CPU", "GPU" or "Ascend".
        rank_id: this process's rank (0 without distribution).
        rank_size: number of processes (1 without distribution).
    """

    device_target: str
    rank_id: int = 0
    rank_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, configs, logs of record and plots."""
        return self.rank_id == 0

    @property
    def distributed(self) -> bool:
        return self.rank_size > 1


def _set_device(ms, device_target: str) -> None:
    device_id = int(os.environ.get("DEVICE_ID", "0")) if device_target != "CPU" else None
    if device_id is None and ms.get_context("device_target") == device_target:
        return  # already set (a second run in one process); setting it again after start-up is an error
    if hasattr(ms, "set_device"):
        ms.set_device(device_target, device_id) if device_id is not None else ms.set_device(device_target)
    else:  # MindSpore < 2.5
        kwargs = {"device_target": device_target}
        if device_id is not None:
            kwargs["device_id"] = device_id
        ms.set_context(**kwargs)


def init_env(device_target: str = "CPU", mode: str = "graph", seed: int = 42, distribute: bool = False) -> RunEnv:
    """Set the device, the execution mode and every seed; with ``distribute``, join the process group.

    The same seed on every rank makes the initial weights agree across ranks; the data pipeline shards by rank.

    Args:
        device_target: "CPU", "GPU" or "Ascend".
        mode: "graph" (compiled, what users train with) or "pynative".
        seed: seed of Python, NumPy, MindSpore and the data pipeline.
        distribute: initialise the communication group (launch through msrun or a rank table).
    """
    import mindspore as ms
    import mindspore.dataset as ds

    _set_device(ms, device_target)
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)
    ds.config.set_seed(seed)
    if not distribute:
        return RunEnv(device_target)

    from mindspore.communication import get_group_size, get_rank, init

    init()
    rank_id, rank_size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=rank_size)
    return RunEnv(device_target, rank_id, rank_size)
