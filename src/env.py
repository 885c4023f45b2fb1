"""Device, execution mode, seeds and the data-parallel context: the one place for version-dependent MindSpore calls.

Everything here runs when a command starts, never at import time.  MindSpore 2.7-2.10 all provide
``ms.set_device``; older releases only take ``device_target`` through ``set_context``, which is the fallback.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np

__all__ = ["CPU_GRAPH_KERNEL_FLAGS", "RunEnv", "graph_kernel_enabled", "init_env", "kernel_cache_dir"]


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


def graph_kernel_enabled(setting: str, device_target: str, mode: str = "graph") -> bool:
    """Whether MindSpore's graph-kernel fusion is switched on for a run.

    ``"auto"`` turns it on in graph mode on CPU, for training and inference alike: it fuses chains of element-wise
    operators, LayerNorm and Transpose into generated kernels, which cuts the peak memory of an ACmix-ResNet-50
    train step about 3.5x and of its forward pass about 4x, at the price of a longer cold first compilation (the
    kernels are then cached, ``kernel_cache_dir``).  Fused train steps compute the unfused gradients with the
    workaround of ``CPU_GRAPH_KERNEL_FLAGS``; the slow tests check one full-depth model of each family at 224x224
    (tests/test_graph_kernel.py, docs/performance.md).  GPU and Ascend keep MindSpore's defaults under ``"auto"``
    (not measured here).  ``"on"`` forces fusion anywhere, ``"off"`` disables it.

    Args:
        setting: "auto", "on" or "off".
        device_target: "CPU", "GPU" or "Ascend".
        mode: "graph" or "pynative" (fusion only applies to compiled graphs).
    """
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"graph_kernel must be 'auto', 'on' or 'off', got {setting!r}")
    if mode != "graph" or setting == "off":
        return False
    return setting == "on" or device_target == "CPU"


def kernel_cache_dir() -> str:
    """Where the fused kernels compiled for graph-kernel fusion are kept between runs.

    ``$MS_COMPILER_CACHE_PATH`` when set (MindSpore's own variable), else ``$XDG_CACHE_HOME/acmix_mindspore``
    (``~/.cache/acmix_mindspore``).  A warm cache takes the extra compilation time of fusion away (ACmix-Swin-T
    forward: 28 s cold, 10 s warm) and keeps MindSpore from writing ``akg_kernel_meta/`` into the working directory.
    """
    if os.environ.get("MS_COMPILER_CACHE_PATH"):
        return os.environ["MS_COMPILER_CACHE_PATH"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "acmix_mindspore")


# MindSpore 2.8's CPU kernel generator miscomputes a fused kernel in which a Transpose is followed by a Reshape
# that splits an axis, when that Reshape is an output of the kernel and a reduction over it is another: the
# pattern of every convolution bias gradient behind a token transpose (ACmix-Swin's and ACmix-PVT's patch
# embeddings; gradients off by up to 1e37).  Keeping Reshape out of the fused clusters avoids it at a small cost
# (ACmix-Swin-T forward 598 -> 635 MiB); tests/test_graph_kernel.py holds the reduced case and the model checks.
CPU_GRAPH_KERNEL_FLAGS = "--disable_cluster_ops=Reshape"


def _set_graph_kernel(ms, enabled: bool, device_target: str) -> None:
    if enabled:
        path = kernel_cache_dir()
        os.makedirs(path, exist_ok=True)
        os.environ["MS_COMPILER_CACHE_PATH"] = path
        # The kernel compiler reads its (for CPU, empty) tiling table only from below this path and otherwise
        # prints a warning per kernel, hundreds per run; pointing it at its own config folder changes nothing else.
        akg_config = os.path.join(os.path.dirname(ms.__file__), "_akg", "akg", "config")
        if os.path.isdir(akg_config):
            os.environ.setdefault("AKG_WHITE_LIST_PATH", akg_config)
        ms.set_context(enable_graph_kernel=True)  # MindSpore 2.8 warns that the key is deprecated; it is the
        # switch that works on CPU there (jit_level O1, the suggested replacement, fuses nothing on CPU)
        flags = os.environ.get("MS_DEV_GRAPH_KERNEL_FLAGS", "")  # MindSpore 2.8's place for them; a user's stay
        if device_target == "CPU" and CPU_GRAPH_KERNEL_FLAGS not in flags:
            os.environ["MS_DEV_GRAPH_KERNEL_FLAGS"] = f"{flags} {CPU_GRAPH_KERNEL_FLAGS}".strip()
    elif ms.get_context("enable_graph_kernel"):
        ms.set_context(enable_graph_kernel=False)  # a second run in the same process


def init_env(
    device_target: str = "CPU",
    mode: str = "graph",
    seed: int = 42,
    distribute: bool = False,
    graph_kernel: str = "auto",
) -> RunEnv:
    """Set the device, the execution mode, operator fusion and every seed; with ``distribute``, join the group.

    The same seed on every rank makes the initial weights agree across ranks; the data pipeline shards by rank.

    Args:
        device_target: "CPU", "GPU" or "Ascend".
        mode: "graph" (compiled, what users train with) or "pynative".
        seed: seed of Python, NumPy, MindSpore and the data pipeline.
        distribute: initialise the communication group (launch through msrun or a rank table).
        graph_kernel: "auto", "on" or "off" (see ``graph_kernel_enabled``).
    """
    import mindspore as ms
    import mindspore.dataset as ds

    _set_device(ms, device_target)
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    _set_graph_kernel(ms, graph_kernel_enabled(graph_kernel, device_target, mode), device_target)
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
