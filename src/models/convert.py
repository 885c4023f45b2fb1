"""Conversion of official PyTorch ACmix state_dicts to this project's MindSpore parameters.

The MindSpore cells keep the official module and parameter names, so the
conversion is a renaming of the few tensors whose names differ between the
frameworks plus the removal of buffers MindSpore does not keep:

* BatchNorm: ``weight/bias/running_mean/running_var`` become
  ``gamma/beta/moving_mean/moving_variance``; ``num_batches_tracked`` is dropped.
* LayerNorm (modules named ``norm``, ``norm1``, ``norm2``, ... in the official
  Swin code): ``weight/bias`` become ``gamma/beta``.
* Swin buffers: ``attn_mask`` is dropped (it is rebuilt from the configuration)
  and ``relative_position_index`` is checked against the standard index of its
  window and dropped; a checkpoint whose index differs is refused.
* Convolution and Linear weights have the same layout in both frameworks
  ((out, in/groups, kh, kw) and (out, in)) and keep their names.
* A ``module.`` prefix (DataParallel / DistributedDataParallel checkpoints of the
  official ResNet training script) is removed.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, Mapping

import numpy as np
from mindspore import Parameter, Tensor

__all__ = ["convert_state_dict", "convert_name", "unwrap_checkpoint", "DROPPED_SUFFIXES"]

DROPPED_SUFFIXES = ("num_batches_tracked", "attn_mask", "relative_position_index")
_LAYER_NORM = re.compile(r"^norm\d*$")
_BN_RENAMES = {
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def _is_batchnorm(prefix: str, keys: Iterable[str]) -> bool:
    return f"{prefix}.running_mean" in keys


def convert_name(name: str, keys: Iterable[str]) -> str | None:
    """MindSpore name of an official parameter, or None if the tensor is dropped.

    Args:
        name: official (PyTorch) parameter name, without a ``module.`` prefix.
        keys: all official names of the state_dict (to recognise BatchNorm layers).
    """
    prefix, _, leaf = name.rpartition(".")
    if leaf in DROPPED_SUFFIXES:
        return None
    is_norm = prefix and (_is_batchnorm(prefix, keys) or _LAYER_NORM.match(prefix.rpartition(".")[2]))
    if is_norm:
        if leaf in _BN_RENAMES:
            return f"{prefix}.{_BN_RENAMES[leaf]}"
        if leaf == "weight":
            return f"{prefix}.gamma"
        if leaf == "bias":
            return f"{prefix}.beta"
    return name


def unwrap_checkpoint(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The state_dict inside an official checkpoint: ``obj["model"]`` (Swin), ``obj["state_dict"]`` (ResNet), or obj.

    Args:
        obj: what ``torch.load`` (or ``numpy.load``) returned.
    """
    for key in ("model", "state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            return obj[key]
    return obj


def _check_relative_position_index(name: str, value: np.ndarray) -> None:
    from .layers.window_attention import relative_position_index

    n = value.shape[0]
    ws = int(round(n**0.5))
    if value.shape != (n, n) or ws * ws != n or not np.array_equal(value, relative_position_index((ws, ws))):
        raise ValueError(f"{name}: not the standard relative position index of a square window; refusing to convert")


def convert_state_dict(state: Mapping[str, np.ndarray]) -> Dict[str, Parameter]:
    """Map an official state_dict ``{name: numpy array}`` to ``{name: mindspore.Parameter}``.

    The result loads with ``mindspore.load_param_into_net(net, params, strict_load=True)``.

    Args:
        state: official parameters and buffers as numpy arrays (floating tensors
            are converted to float32; integer buffers that MindSpore does not keep
            are dropped).
    """
    stripped = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    keys = set(stripped)
    out: Dict[str, Parameter] = {}
    for name, value in stripped.items():
        if name.endswith("relative_position_index"):
            _check_relative_position_index(name, np.asarray(value))
        new = convert_name(name, keys)
        if new is None:
            continue
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        out[new] = Parameter(Tensor(arr), name=new)
    return out
