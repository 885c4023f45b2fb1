"""Checkpoints: atomic writes, rotation, the best by top-1, ``--resume auto``, and strict loading into a model.

A training checkpoint holds every parameter of the train step (model weights and buffers, optimizer moments and
step, loss scale and its counter, EMA weights) plus ``epoch``, ``global_step`` and ``best_top1``.  It is written
to a temporary file in the same folder and renamed, so a run killed mid-write leaves the previous checkpoint
intact and never a truncated file under a checkpoint name.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, List, Optional, Tuple

import mindspore as ms
from mindspore import Parameter, nn

from .errors import CheckpointError

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "latest_checkpoint",
    "rotate_checkpoints",
    "read_checkpoint",
    "load_model_weights",
    "restore_train_state",
    "param_mismatches",
]

_EPOCH_RE = re.compile(r"_epoch(\d+)\.ckpt$")
# Names in a training checkpoint that are not model weights.
_TRAIN_STATE_PREFIXES = ("moments.", "adam_m.", "adam_v.", "ema.", "loss_scale.", "global_step", "learning_rate")
META_PREFIX = "meta."  # scalars stored beside the parameters (the optimizer has its own "global_step")


def save_checkpoint(params: Dict[str, Parameter], path: str, meta: Dict[str, float]) -> None:
    """Write ``params`` and ``meta`` to ``path`` atomically.

    Args:
        params: name -> parameter (``cell.parameters_dict()``).
        path: destination, ending in ``.ckpt``.
        meta: scalars stored beside the weights (epoch, global_step, best_top1).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    entries = [{"name": name, "data": p} for name, p in params.items()]
    ms.save_checkpoint(entries, tmp, append_dict={META_PREFIX + k: float(v) for k, v in meta.items()})
    os.replace(tmp, path)


def _epoch_of(path: str) -> int:
    m = _EPOCH_RE.search(path)
    return int(m.group(1)) if m else -1


def latest_checkpoint(folder: str, prefix: str) -> Optional[str]:
    """The checkpoint with the highest epoch in ``folder`` (``<prefix>_epoch<N>.ckpt``), or None.

    Args:
        folder: output folder of a run.
        prefix: checkpoint file prefix (the model name).
    """
    paths = [p for p in glob.glob(os.path.join(folder, f"{prefix}_epoch*.ckpt")) if _epoch_of(p) >= 0]
    return max(paths, key=_epoch_of) if paths else None


def rotate_checkpoints(folder: str, prefix: str, keep: int) -> List[str]:
    """Delete all but the ``keep`` newest epoch checkpoints; returns the deleted paths.

    Args:
        folder: output folder.
        prefix: checkpoint file prefix.
        keep: how many to keep (0 keeps all).
    """
    if keep <= 0:
        return []
    paths = sorted(glob.glob(os.path.join(folder, f"{prefix}_epoch*.ckpt")), key=_epoch_of)
    old = paths[:-keep]
    for p in old:
        os.remove(p)
    return old


def read_checkpoint(path: str) -> Tuple[Dict[str, Parameter], Dict[str, float]]:
    """(parameters, meta) of a checkpoint file, with a clear error when it is missing or unreadable.

    Args:
        path: a ``.ckpt`` file.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError for truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    meta = {k[len(META_PREFIX) :]: float(raw.pop(k).asnumpy()) for k in list(raw) if k.startswith(META_PREFIX)}
    return raw, meta


def param_mismatches(
    own: Dict[str, Parameter], loaded: Dict[str, Parameter], source: str = "checkpoint"
) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, wrong shape) between a model's parameters and loaded ones, each sorted.

    Args:
        own: the model's ``parameters_dict()``.
        loaded: name -> loaded parameter.
        source: what the loaded tensors are called in the wrong-shape lines.
    """
    missing = sorted(set(own) - set(loaded))
    unexpected = sorted(set(loaded) - set(own))
    wrong = [
        f"{k}: {source} {tuple(loaded[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(loaded))
        if tuple(loaded[k].shape) != tuple(own[k].shape)
    ]
    return missing, unexpected, wrong


def _model_view(params: Dict[str, Parameter], use_ema: bool) -> Dict[str, Parameter]:
    """Model weights of a checkpoint: the EMA copies where present and wanted, else the raw weights."""
    model = {k: v for k, v in params.items() if not k.startswith(_TRAIN_STATE_PREFIXES)}
    if use_ema:
        for k, v in params.items():
            if k.startswith("ema."):
                model[k[len("ema.") :]] = v
    return model


def load_model_weights(
    network: nn.Cell, path: str, use_ema: bool = True, skip_prefixes: Tuple[str, ...] = ()
) -> Dict[str, float]:
    """Load a checkpoint into ``network`` strictly: every mismatch is an error that lists what does not fit.

    Accepts training checkpoints of this project (optimizer state is ignored; EMA weights are used when present
    and ``use_ema``) and plain weight files.  Missing parameters, unexpected parameters and shape mismatches
    (a different number of classes shows up as the head's shapes) are all reported together; nothing is loaded
    unless everything fits.

    Args:
        network: the model.
        path: checkpoint file.
        use_ema: prefer the EMA weights of a training checkpoint.
        skip_prefixes: checkpoint entries left out when the model has no such cell (e.g. ``("fc.",)`` for a
            model built without its classifier).
    """
    params, meta = read_checkpoint(path)
    weights = _model_view(params, use_ema)
    own = network.parameters_dict()
    weights = {k: v for k, v in weights.items() if k in own or not k.startswith(tuple(skip_prefixes))}
    missing, unexpected, wrong = param_mismatches(own, weights)
    if missing or unexpected or wrong:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                shown = ", ".join(items[:10]) + (f", ... ({len(items)} in all)" if len(items) > 10 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError(f"checkpoint {path} does not fit the model: {'; '.join(parts)}")
    for name, p in own.items():
        p.set_data(_as_tensor(weights[name], p))
    return meta


def _as_tensor(value: Parameter, like: Parameter) -> ms.Tensor:
    return ms.Tensor(value.asnumpy()).astype(like.dtype)


def restore_train_state(train_step: nn.Cell, path: str) -> Dict[str, float]:
    """Restore every parameter of a train step (weights, optimizer, loss scale, EMA); returns the meta.

    Args:
        train_step: the train step cell built exactly as in the run that wrote ``path``.
        path: training checkpoint.
    """
    params, meta = read_checkpoint(path)
    if "global_step" not in meta or "epoch" not in meta:
        raise CheckpointError(f"{path} has no epoch/global_step: not a training checkpoint of this project")
    own = train_step.state_parameters()
    missing, _, wrong = param_mismatches(own, params)
    if missing or wrong:
        raise CheckpointError(
            f"cannot resume from {path}: missing {missing[:10]} wrong shape {wrong[:10]} "
            "(was it written by a run with the same model, optimizer, EMA and loss-scale settings?)"
        )
    for name, p in own.items():
        p.set_data(_as_tensor(params[name], p))
    return meta
