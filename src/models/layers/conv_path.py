"""The ACmix convolution path (Pan et al., CVPR 2022, section 3.3, eq. 13), built and evaluated in one place.

Every ACmix cell (ResNet, Swin, PVT and SAN variants) feeds its Stage I features, cut into ``G3`` feature groups,
to the same path: the light fully-connected layer ``fc`` (1x1, ``G3 -> kernel_conv**2`` maps) and ``dep_conv``, a
group convolution whose kernels start as shift kernels, mixed with the attention path by the learnable scalars
``rate1`` and ``rate2``.  :func:`build_conv_path` creates those parameters on the owning cell, under the official
names (LeapLabTHU/ACmix), and :func:`acmix_conv_path` evaluates the path as one grouped convolution.

Differences from the official module: ``fc`` composed with ``dep_conv`` is one convolution kernel
(:func:`compose_conv_path`), so the ``kernel_conv**2`` intermediate maps are never built; the padding is
``dilation * (kernel_conv // 2)`` for any odd kernel (the official one is fixed at 1); the learnable
parameters are exactly the official ones.  See docs/models.md for the reasoning.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .group_conv import grouped_conv2d

__all__ = ["acmix_conv_path", "build_conv_path", "check_odd", "compose_conv_path", "shift_kernel"]


def check_odd(owner: str, name: str, value: int) -> None:
    """Reject a window or kernel size that is not an odd positive integer (an even window has no centre).

    Args:
        owner: class name that starts the error message.
        name: argument name.
        value: the size to check.
    """
    if not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(f"{owner}: {name} must be an odd positive integer (a window needs a centre), got {value!r}")


def shift_kernel(out_planes: int, kernel_conv: int) -> np.ndarray:
    """The shift initialisation of ``dep_conv``: ``w[o, j] = one-hot(tap j)``, shape (O, kc**2, kc, kc).

    Args:
        out_planes: output channels O.
        kernel_conv: kernel size kc.
    """
    taps = kernel_conv * kernel_conv
    w = np.zeros((taps, kernel_conv, kernel_conv), np.float32)
    for j in range(taps):
        w[j, j // kernel_conv, j % kernel_conv] = 1.0
    return np.tile(w[None], (out_planes, 1, 1, 1))


def build_conv_path(
    cell: nn.Cell,
    in_groups: int,
    out_planes: int,
    groups: int,
    kernel_conv: int,
    stride: int = 1,
    dilation: int = 1,
    fc_bias: bool = False,
) -> None:
    """Give ``cell`` the convolution path's parameters: ``fc``, ``dep_conv``, ``rate1``, ``rate2``.

    They are attributes of ``cell`` itself, not of a sub-cell, so that their names stay the official ones
    (``<cell>.fc.weight``, ``<cell>.dep_conv.weight``, ``<cell>.rate1``) that checkpoints and fixtures load by.

    Args:
        cell: the ACmix cell that owns the path; its class name starts the error messages.
        in_groups: feature groups G3 that ``fc`` mixes (``3 * heads``; SAN: ``(2 rel + mid) / (mid / share)``).
        out_planes: output channels of ``dep_conv``; a multiple of ``groups``.
        groups: groups of ``dep_conv`` (the head dimension; SAN: ``mid / share``).
        kernel_conv: kernel size of ``dep_conv`` (odd).
        stride: stride of ``dep_conv``.
        dilation: dilation of ``dep_conv``.
        fc_bias: give ``fc`` a bias (the Swin and PVT variants have one).
    """
    owner = type(cell).__name__
    check_odd(owner, "kernel_conv", kernel_conv)
    if groups < 1 or out_planes % groups:
        raise ValueError(f"{owner}: the convolution path's {out_planes} outputs do not split into {groups} groups")
    taps = kernel_conv * kernel_conv
    cell.fc = nn.Conv2d(in_groups, taps, 1, has_bias=fc_bias)
    cell.dep_conv = nn.Conv2d(
        taps * groups,
        out_planes,
        kernel_conv,
        stride=stride,
        pad_mode="pad",
        padding=dilation * (kernel_conv // 2),
        dilation=dilation,
        group=groups,
        has_bias=False,  # as the official module, whose reset_parameters drops it
        weight_init=Tensor(shift_kernel(out_planes, kernel_conv)),
    )
    cell.rate1 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate1")
    cell.rate2 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate2")


def compose_conv_path(fc_weight: Tensor, dep_weight: Tensor) -> Tensor:
    """Kernel of ``dep_conv(fc(.))`` as one group convolution: (O, G3, kc, kc).

    ``fc_weight`` is (kc**2, G3, 1, 1) and ``dep_weight`` is (O, kc**2, kc, kc); the result is
    ``W[o, g] = sum_j fc[j, g] * dep[o, j]``.

    Args:
        fc_weight: weight of the light fully-connected layer.
        dep_weight: weight of the shift group convolution.
    """
    taps, groups3 = fc_weight.shape[0], fc_weight.shape[1]
    out, kc = dep_weight.shape[0], dep_weight.shape[2]
    fc2 = ops.broadcast_to(fc_weight.reshape(1, taps, groups3).transpose(0, 2, 1), (out, groups3, taps))
    dep = dep_weight.reshape(out, taps, kc * kc)
    return ops.bmm(fc2, dep).reshape(out, groups3, kc, kc)


def acmix_conv_path(
    features: Tensor,
    fc_weight: Tensor,
    fc_bias: Optional[Tensor],
    dep_weight: Tensor,
    groups: int,
    stride: int = 1,
    dilation: int = 1,
    impl: str = "matmul",
) -> Tensor:
    """The ACmix convolution path: ``dep_conv(fc(features))``, evaluated as one grouped convolution.

    Args:
        features: Stage I output, (B, groups * G3, H, W), channel ``d * G3 + g`` holding feature
            group g (q heads, then k heads, then v heads) at index d.
        fc_weight: (kc**2, G3, 1, 1) weight of the light fully-connected layer.
        fc_bias: its (kc**2,) bias (the Swin and PVT variants have one) or None.
        dep_weight: (O, kc**2, kc, kc) weight of the shift group convolution (no bias).
        groups: the number of groups of ``dep_conv``.
        stride: stride of the path.
        dilation: dilation of the path.
        impl: grouped-convolution implementation, ``"matmul"`` or ``"conv"`` (:func:`grouped_conv2d`).

    Returns:
        (B, O, ceil(H/s), ceil(W/s)); output channel o comes from group ``o // (O / groups)``.
    """
    dtype = features.dtype
    kernel = compose_conv_path(fc_weight, dep_weight).astype(dtype)
    out = grouped_conv2d(features, kernel, groups, stride, dilation, impl)
    if fc_bias is not None:
        # a constant map through a zero-padded convolution is not constant at the borders:
        # convolve a ones map with the bias-weighted kernels to get the exact term
        taps = dep_weight.shape[1]
        kb = (fc_bias.reshape(1, taps, 1, 1) * dep_weight).sum(1, keepdims=True).astype(dtype)
        ones = ops.ones((1, 1, features.shape[2], features.shape[3]), dtype)
        out = out + grouped_conv2d(ones, kb, 1, stride, dilation, impl)
    return out
