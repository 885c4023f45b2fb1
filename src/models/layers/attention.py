"""The four ACmix attention patterns behind one constructor and one call contract.

``create_acmix_attention(pattern, dim, ...)`` builds the ACmix layer of a pattern (paper section 4.5):

============== ================================================== ======================================
pattern        attention path (Stage II)                          cell
============== ================================================== ======================================
sliding_window softmax over each pixel's k x k neighbourhood      :class:`ACmix` (ACmix-ResNet)
window         softmax inside non-overlapping windows (+ bias)    :class:`WindowAttentionACmix` (Swin)
global         softmax over the (spatially reduced) whole map     :class:`GlobalAttentionACmix` (PVT)
patchwise      weights from the patch by two linear layers (SAN)  :class:`PatchwiseAttentionACmix` (SAN)
============== ================================================== ======================================

Every variant computes its Stage I projections once and feeds them to both its attention path and the same
convolution path (:func:`acmix_conv_path`), mixed as ``rate1 * attention + rate2 * convolution``.

The returned cell maps ``(B, dim, H, W)`` to ``(B, out_dim, ceil(H / stride), ceil(W / stride))``.  The token
forms used inside the transformer hosts (``(B, H, W, C)`` windows, ``(B, N, C)`` sequences) are adapted here, so
a caller can swap patterns by name.  ``window`` and ``global`` keep the width (``out_dim == dim``) and
``stride == 1``, as their hosts do; ``window`` needs H and W divisible by ``window_size``.
"""

from __future__ import annotations

from typing import Optional, Tuple

from mindspore import Tensor, nn

from .acmix import ACmix
from .global_attention import GlobalAttentionACmix
from .patchwise_attention import PatchwiseAttentionACmix
from .window_attention import WindowAttentionACmix

__all__ = ["ACMIX_PATTERNS", "create_acmix_attention", "WindowACmix2d", "GlobalACmix2d"]

ACMIX_PATTERNS: Tuple[str, ...] = ("sliding_window", "window", "global", "patchwise")


class WindowACmix2d(nn.Cell):
    """Window-pattern ACmix on a channels-first map (no shift; the Swin block handles shifted windows).

    Args:
        attn: a :class:`WindowAttentionACmix`.
    """

    def __init__(self, attn: WindowAttentionACmix) -> None:
        super().__init__()
        self.attn = attn

    def construct(self, x: Tensor) -> Tensor:
        return self.attn(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


class GlobalACmix2d(nn.Cell):
    """Global-pattern ACmix (PVT) on a channels-first map.

    Args:
        attn: a :class:`GlobalAttentionACmix`.
    """

    def __init__(self, attn: GlobalAttentionACmix) -> None:
        super().__init__()
        self.attn = attn

    def construct(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.reshape(b, c, h * w).transpose(0, 2, 1)
        out = self.attn(tokens, h, w)
        return out.transpose(0, 2, 1).reshape(b, c, h, w)


def _same_width(pattern: str, dim: int, out_dim: int, stride: int) -> None:
    if out_dim != dim or stride != 1:
        raise ValueError(f"the {pattern!r} pattern keeps the width and resolution: out_dim == dim and stride == 1")


def create_acmix_attention(
    pattern: str,
    dim: int,
    out_dim: Optional[int] = None,
    num_heads: int = 4,
    kernel_conv: int = 3,
    stride: int = 1,
    kernel_att: int = 7,
    window_size: int = 7,
    sr_ratio: int = 1,
    share_planes: int = 8,
    rel_planes: Optional[int] = None,
    **options,
) -> nn.Cell:
    """An ACmix layer of ``pattern`` mapping (B, dim, H, W) to (B, out_dim, ceil(H/stride), ceil(W/stride)).

    Args:
        pattern: one of ``ACMIX_PATTERNS``.
        dim: input channels.
        out_dim: output channels (default ``dim``).
        num_heads: attention heads (sliding_window, window, global); patchwise shares weights over
            ``share_planes`` channels instead.
        kernel_conv: kernel of the convolution path.
        stride: output stride (sliding_window and patchwise).
        kernel_att: neighbourhood of the sliding_window and patchwise attention.
        window_size: window of the window pattern.
        sr_ratio: spatial reduction of keys and values in the global pattern.
        share_planes: channels sharing one patchwise weight.
        rel_planes: channels of the patchwise query/key projections (default SAN's ratio,
            ``2 * out_dim // share_planes``, i.e. ``planes / 16`` for SAN's ``out_dim = planes / 4``).
        **options: further keywords of the underlying cell (e.g. ``qkv_bias``, ``attn_impl``, ``group_conv_impl``).
    """
    out_dim = dim if out_dim is None else out_dim
    if pattern == "sliding_window":
        return ACmix(dim, out_dim, kernel_att, num_heads, kernel_conv, stride=stride, **options)
    if pattern == "window":
        _same_width(pattern, dim, out_dim, stride)
        attn = WindowAttentionACmix(dim, (window_size, window_size), num_heads, kernel_conv=kernel_conv, **options)
        return WindowACmix2d(attn)
    if pattern == "global":
        _same_width(pattern, dim, out_dim, stride)
        attn = GlobalAttentionACmix(dim, num_heads, sr_ratio=sr_ratio, kernel_conv=kernel_conv, **options)
        return GlobalACmix2d(attn)
    if pattern == "patchwise":
        rel = rel_planes if rel_planes is not None else 2 * (out_dim // share_planes)
        return PatchwiseAttentionACmix(
            dim, rel, out_dim, share_planes, kernel_att=kernel_att, kernel_conv=kernel_conv, stride=stride, **options
        )
    raise ValueError(f"unknown ACmix attention pattern {pattern!r}; expected one of {', '.join(ACMIX_PATTERNS)}")
