"""ACmix with (shifted-)window attention, the Swin variant (ACmix paper, CVPR 2022, section 4.5).

Source: ``WindowAttention_acmix`` of LeapLabTHU/ACmix (``Swin-Transformer/models/swin_transformer_acmix.py``),
with the same parameter names.  Stage I is the ``qkv`` Linear(C, 3C), applied once to the whole map.  Stage II:

* attention path: qkv is cut into non-overlapping ``ws x ws`` windows (row-major windows, row-major tokens);
  per window and head, ``softmax(q k^T / sqrt(hd) + B + mask) v`` with the learned relative position bias B,
  then ``proj``;
* convolution path: the 3*heads feature groups of every pixel go through ``fc`` (with a bias in this
  variant) and the shift group convolution ``dep_conv`` over the whole map, not per window
  (:mod:`.conv_path`).

Output ``rate1 * proj(attention) + rate2 * conv``; ``proj`` applies to the attention path only, as in the
official code.  Difference from it: the convolution path is one grouped convolution plus the exact
contribution of ``fc``'s bias, and ``kernel_conv`` may be any odd size (the official module fixes it at 3).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import TruncatedNormal, initializer

from .common import compact_transpose
from .conv_path import acmix_conv_path, build_conv_path
from .group_conv import resolve_group_conv_impl

__all__ = ["WindowAttentionACmix", "relative_position_index", "window_partition", "window_reverse"]


def relative_position_index(window: Sequence[int]) -> np.ndarray:
    """(N, N) index into the ((2Wh-1)(2Ww-1), heads) bias table for tokens i, j of a window, N = Wh*Ww.

    Args:
        window: (Wh, Ww).
    """
    wh, ww = window
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :]
    return ((rel[0] + wh - 1) * (2 * ww - 1) + rel[1] + ww - 1).astype(np.int64)


def window_partition(x: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws*ws, C), windows and tokens row-major.

    Args:
        x: feature map, H and W multiples of ws.
        ws: window size.
    """
    b, h, w, c = x.shape
    x = compact_transpose(x.reshape(b, h // ws, ws, w // ws, ws, c), (0, 1, 3, 2, 4, 5))
    return x.reshape(b * (h // ws) * (w // ws), ws * ws, c)


def window_reverse(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: -> (B, H, W, C).

    Args:
        windows: (B * H/ws * W/ws, ws*ws, C).
        ws: window size.
        h: map height.
        w: map width.
    """
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = compact_transpose(windows.reshape(b, h // ws, w // ws, ws, ws, c), (0, 1, 3, 2, 4, 5))
    return x.reshape(b, h, w, c)


class WindowAttentionACmix(nn.Cell):
    """Window multi-head self-attention with relative position bias, mixed with the ACmix convolution path.

    Accepts the official constructor keywords.  Call as ``cell(x, mask)`` with x of
    shape (B, H, W, C), H and W multiples of the window size, and ``mask`` None or
    (num_windows, N, N) additive (0 / -100) as built by the Swin block.

    Args:
        dim: channels C.
        window_size: window (int or (Wh, Ww); only square windows are supported, as in Swin).
        num_heads: attention heads; ``dim`` must be divisible by it.
        qkv_bias: bias of the qkv projection.
        qk_scale: override of the ``head_dim ** -0.5`` scale.
        attn_drop: dropout on the attention weights.
        proj_drop: dropout on the mixed output.
        group_conv_impl: how the convolution path's grouped convolution is computed (see :class:`ACmix`).
        kernel_conv: kernel of the convolution path (odd; the official module fixes it at 3).
    """

    def __init__(
        self,
        dim: int,
        window_size: Union[int, Sequence[int]],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        group_conv_impl: str = "auto",
        kernel_conv: int = 3,
    ) -> None:
        super().__init__()
        self.group_conv_impl = resolve_group_conv_impl(group_conv_impl)
        ws = tuple(window_size) if isinstance(window_size, (list, tuple)) else (int(window_size),) * 2
        if ws[0] != ws[1] or ws[0] < 1:
            raise ValueError(f"WindowAttentionACmix: window_size must be square and positive, got {window_size}")
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"WindowAttentionACmix: dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.window_size = ws
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        n_rel = (2 * ws[0] - 1) * (2 * ws[1] - 1)
        self.relative_position_bias_table = Parameter(
            initializer(TruncatedNormal(0.02), (n_rel, num_heads)), name="relative_position_bias_table"
        )
        self._rel_index = Tensor(relative_position_index(ws).reshape(-1).astype(np.int32))
        self.qkv = nn.Dense(dim, 3 * dim, has_bias=qkv_bias)
        self.attn_drop = nn.Dropout(p=attn_drop)
        self.proj = nn.Dense(dim, dim)
        self.proj_drop = nn.Dropout(p=proj_drop)
        build_conv_path(self, 3 * num_heads, dim, self.head_dim, kernel_conv, fc_bias=True)

    def relative_position_bias(self) -> Tensor:
        """(heads, N, N) bias of every head for every query/key pair of a window."""
        n = self.window_size[0] * self.window_size[1]
        bias = ops.gather(self.relative_position_bias_table, self._rel_index, 0)
        return bias.reshape(n, n, self.num_heads).transpose(2, 0, 1)

    def construct(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        b, h, w, c = x.shape
        ws, nh, hd = self.window_size[0], self.num_heads, self.head_dim
        if h % ws or w % ws:
            raise ValueError(f"WindowAttentionACmix: map {h}x{w} is not a multiple of the window {ws}")
        qkv = self.qkv(x)  # (B, H, W, 3C), channel t*C + h*hd + d

        # convolution path on the whole map; groups g = t*nh + h, index d
        feats = compact_transpose(qkv.reshape(b, h, w, 3 * nh, hd), (0, 4, 3, 1, 2)).reshape(b, hd * 3 * nh, h, w)
        out_conv = acmix_conv_path(
            feats, self.fc.weight, self.fc.bias, self.dep_conv.weight, hd, impl=self.group_conv_impl
        )
        out_conv = out_conv.transpose(0, 2, 3, 1)

        # attention path per window
        win = window_partition(qkv, ws)  # (B_, N, 3C)
        bw, n = win.shape[0], win.shape[1]
        win = compact_transpose(win.reshape(bw, n, 3, nh, hd), (2, 0, 3, 1, 4))  # (3, B_, nh, N, hd)
        q = ops.slice(win, (0, 0, 0, 0, 0), (1, bw, nh, n, hd)).reshape(bw * nh, n, hd) * self.scale
        k = ops.slice(win, (1, 0, 0, 0, 0), (1, bw, nh, n, hd)).reshape(bw * nh, n, hd)
        v = ops.slice(win, (2, 0, 0, 0, 0), (1, bw, nh, n, hd)).reshape(bw * nh, n, hd)
        attn = ops.bmm(q, k.transpose(0, 2, 1)).reshape(bw, nh, n, n)
        attn = attn + self.relative_position_bias().astype(attn.dtype).expand_dims(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(bw // nw, nw, nh, n, n) + mask.astype(attn.dtype).reshape(1, nw, 1, n, n)
            attn = attn.reshape(bw, nh, n, n)
        attn = self.attn_drop(ops.softmax(attn, -1))
        out = ops.bmm(attn.reshape(bw * nh, n, n), v).reshape(bw, nh, n, hd).transpose(0, 2, 1, 3)
        out = self.proj(out.reshape(bw, n, c))
        out_att = window_reverse(out, ws, h, w)

        out = self.rate1.astype(x.dtype) * out_att + self.rate2.astype(x.dtype) * out_conv
        return self.proj_drop(out)
