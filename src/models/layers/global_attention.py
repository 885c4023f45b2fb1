"""ACmix with global attention and spatial reduction, the PVT variant (PVT v1's ``Attention`` + the conv path).

PVT v1 (Wang et al., ICCV 2021) attends from every token to all tokens of a
spatially reduced map: ``sr`` (a ``sr_ratio x sr_ratio`` convolution of stride
``sr_ratio``) and a LayerNorm shrink the map before the key/value projection.
ACmix (paper section 4.5, eq. 19) keeps that attention and adds its convolution
path, fed by the same projections.

* **Stage I** is PVT's own projections, computed once: ``q = q(x)`` on all H*W
  tokens and ``k, v = kv(norm(sr(x)))`` on the reduced (H/sr) x (W/sr) map.
* **Attention path**: ``softmax(q k^T * scale) v`` per head over the reduced
  keys, as PVT, then ``proj``.
* **Convolution path**: the 3*heads feature groups of every pixel (q heads,
  k heads, v heads) go through ``fc`` (a 1x1 convolution with bias, as in the
  Swin variant) and the shift group convolution ``dep_conv`` (no bias), as one
  grouped convolution (:func:`acmix_conv_path`).  q is at full resolution; k
  and v are brought back from the reduced map to H x W by a parameter-free
  nearest upsampling (each pixel takes the key/value of the ``sr x sr`` patch
  that covers it; rows or columns left over by the floor of ``sr`` take the
  last patch).  With ``sr_ratio`` 1 this is exactly the core cell's
  convolution path on q, k, v.
* **Output**: ``rate1 * proj(attention) + rate2 * conv`` (rates start at 0.5),
  then ``proj_drop``.  ``proj`` belongs to the attention path only, as in the
  official Swin variant (:class:`WindowAttentionACmix`).

Why k and v are not projected at full resolution for the convolution path:
that needs ``kv`` on all H*W tokens and then a reduction of k and v for the
attention, either with two ``sr`` convolutions (one for k, one for v: twice
PVT's ``sr`` parameters and MACs) or a parameter-free pooling (dropping PVT's
``sr`` convolution altogether).  Both move the model away from PVT and from the
paper's figures; :mod:`src.models.acmix_pvt` gives the numbers.

Leading extra tokens (PVT's class token in the last stage): ``x`` may hold
``N = extra + H*W`` tokens, the extra ones first.  They take part in the
attention as in PVT (as queries, and as keys/values when ``sr_ratio`` is 1).
They have no place on the map, so the convolution path sees each of them as a
1x1 map of its own: with zero padding only the kernels' centre taps reach it.
(An output of zero would leave the last block's ``fc``, ``dep_conv`` and
``rate2`` without gradient, because PVT classifies from the class token alone.)
PVT cannot reduce a map with extra tokens either; that is an error here too.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype

from .acmix import acmix_conv_path, shift_kernel
from .common import compact_transpose, layer_norm
from .group_conv import resolve_group_conv_impl

__all__ = ["GlobalAttentionACmix", "nearest_upsample"]


def _repeat_last(x: Tensor, axis: int, extra: int) -> Tensor:
    if extra == 0:
        return x
    begin = [0] * x.ndim
    begin[axis] = x.shape[axis] - 1
    size = list(x.shape)
    size[axis] = 1
    last = ops.slice(x, tuple(begin), tuple(size))
    size[axis] = extra
    return ops.concat([x, ops.broadcast_to(last, tuple(size))], axis)


def nearest_upsample(x: Tensor, ratio: int, h: int, w: int) -> Tensor:
    """(B, h // ratio, w // ratio, C) -> (B, h, w, C): pixel (i, j) takes cell (min(i // r, hr-1), min(j // r, wr-1)).

    Args:
        x: reduced map, channels last.
        ratio: reduction ratio r.
        h: output height.
        w: output width.
    """
    if ratio == 1:
        return x
    b, hr, wr, c = x.shape
    # broadcast instead of a gather: a reshape and a BroadcastTo on every backend
    y = ops.broadcast_to(x.reshape(b, hr, 1, wr, 1, c), (b, hr, ratio, wr, ratio, c))
    y = y.reshape(b, hr * ratio, wr * ratio, c)
    return _repeat_last(_repeat_last(y, 1, h - hr * ratio), 2, w - wr * ratio)


class GlobalAttentionACmix(nn.Cell):
    """PVT's spatial-reduction attention mixed with the ACmix convolution path.

    Call as ``cell(x, H, W)`` with x (B, N, C), ``N = H*W`` (or ``1 + H*W`` with a class
    token first, when ``sr_ratio`` is 1); returns (B, N, C).  Parameter names follow PVT
    (``q``, ``kv``, ``sr``, ``norm``, ``proj``) and the ACmix cells (``fc``, ``dep_conv``,
    ``rate1``, ``rate2``).

    Args:
        dim: channels C.
        num_heads: attention heads; ``dim`` must be divisible by it.
        qkv_bias: bias of the q and kv projections.
        qk_scale: override of the ``head_dim ** -0.5`` scale.
        attn_drop: dropout on the attention weights.
        proj_drop: dropout on the mixed output.
        sr_ratio: spatial reduction of keys and values (kernel and stride of ``sr``); maps must be at least
            this large.
        kernel_conv: kernel size of the convolution path (odd).
        group_conv_impl: how the convolution path's grouped convolution is computed (see :class:`ACmix`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: Optional[float] = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        sr_ratio: int = 1,
        kernel_conv: int = 3,
        group_conv_impl: str = "auto",
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"GlobalAttentionACmix: dim ({dim}) must be divisible by num_heads ({num_heads})")
        if not isinstance(sr_ratio, int) or sr_ratio < 1:
            raise ValueError(f"GlobalAttentionACmix: sr_ratio must be a positive integer, got {sr_ratio!r}")
        if not isinstance(kernel_conv, int) or kernel_conv < 1 or kernel_conv % 2 == 0:
            raise ValueError(f"GlobalAttentionACmix: kernel_conv must be an odd positive integer, got {kernel_conv!r}")
        self.group_conv_impl = resolve_group_conv_impl(group_conv_impl)
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.sr_ratio = sr_ratio
        self.kernel_conv = kernel_conv

        self.q = nn.Dense(dim, dim, has_bias=qkv_bias)
        self.kv = nn.Dense(dim, 2 * dim, has_bias=qkv_bias)
        self.attn_drop = nn.Dropout(p=attn_drop)
        self.proj = nn.Dense(dim, dim)
        self.proj_drop = nn.Dropout(p=proj_drop)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio, pad_mode="valid", has_bias=True)
            self.norm = layer_norm(dim)  # PVT: plain nn.LayerNorm here (eps 1e-5), unlike its blocks' 1e-6
        else:
            self.sr = None
            self.norm = None

        taps = kernel_conv * kernel_conv
        self.fc = nn.Conv2d(3 * num_heads, taps, 1, has_bias=True)
        self.dep_conv = nn.Conv2d(
            taps * self.head_dim,
            dim,
            kernel_conv,
            pad_mode="pad",
            padding=kernel_conv // 2,
            group=self.head_dim,
            has_bias=False,
            weight_init=Tensor(shift_kernel(dim, kernel_conv)),
        )
        self.rate1 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate1")
        self.rate2 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate2")

    def conv_path(self, qkv: Tensor) -> Tensor:
        """The ACmix convolution path: (B, H, W, 3C) q|k|v maps, channel ``t*C + head*hd + d`` -> (B, H*W, C).

        Args:
            qkv: Stage I features on the map, channels last.
        """
        b, h, w, c3 = qkv.shape
        nh, hd = self.num_heads, self.head_dim
        feats = compact_transpose(qkv.reshape(b, h, w, 3 * nh, hd), (0, 4, 3, 1, 2)).reshape(b, c3, h, w)
        out = acmix_conv_path(feats, self.fc.weight, self.fc.bias, self.dep_conv.weight, hd, impl=self.group_conv_impl)
        return out.reshape(b, self.dim, h * w).transpose(0, 2, 1)

    def construct(self, x: Tensor, h: int, w: int) -> Tensor:
        b, n, c = x.shape
        nh, hd, sr = self.num_heads, self.head_dim, self.sr_ratio
        extra = n - h * w
        if extra < 0:
            raise ValueError(f"GlobalAttentionACmix: {n} tokens cannot hold a {h}x{w} map")
        if sr > 1 and extra > 0:
            raise ValueError("GlobalAttentionACmix: extra (class) tokens need sr_ratio 1, as in PVT")
        if h < sr or w < sr:
            raise ValueError(f"GlobalAttentionACmix: a {h}x{w} map is smaller than sr_ratio {sr}")

        # Stage I: PVT's projections, once for both paths
        q = self.q(x)  # (B, N, C), channel head*hd + d
        if sr > 1:
            red = self.sr(x.transpose(0, 2, 1).reshape(b, c, h, w))
            hr, wr = red.shape[2], red.shape[3]
            kv = self.kv(self.norm(red.reshape(b, c, hr * wr).transpose(0, 2, 1)))
        else:
            hr, wr = h, w
            kv = self.kv(x)  # (B, Nr, 2C), channel t*C + head*hd + d (t: k, v)
        nr = kv.shape[1]

        # Stage II, attention path: every query against all (reduced) keys
        qa = (q * self.scale).reshape(b, n, nh, hd).transpose(0, 2, 1, 3).reshape(b * nh, n, hd)
        kva = compact_transpose(kv.reshape(b, nr, 2, nh, hd), (2, 0, 3, 1, 4))  # (2, B, nh, Nr, hd)
        k = ops.slice(kva, (0, 0, 0, 0, 0), (1, b, nh, nr, hd)).reshape(b * nh, nr, hd)
        v = ops.slice(kva, (1, 0, 0, 0, 0), (1, b, nh, nr, hd)).reshape(b * nh, nr, hd)
        logits = ops.bmm(qa, k.transpose(0, 2, 1))
        # softmax in float32 so that a float16 network does not saturate over the long key axis
        attn = self.attn_drop(ops.softmax(logits.astype(mstype.float32), -1).astype(x.dtype))
        out = ops.bmm(attn, v).reshape(b, nh, n, hd).transpose(0, 2, 1, 3).reshape(b, n, c)
        out_att = self.proj(out)

        # Stage II, convolution path on the map, from the same q, k, v
        q_map = q
        kv_map = kv
        if extra > 0:
            q_map = ops.slice(q, (0, extra, 0), (b, h * w, c))
            kv_map = ops.slice(kv, (0, extra, 0), (b, h * w, 2 * c))
        kv_map = nearest_upsample(kv_map.reshape(b, hr, wr, 2 * c), sr, h, w)
        out_conv = self.conv_path(ops.concat([q_map.reshape(b, h, w, c), kv_map], -1))
        if extra > 0:
            # each extra token is a 1x1 map of its own: zero padding leaves it the kernels' centre taps
            tokens = ops.concat(
                [ops.slice(q, (0, 0, 0), (b, extra, c)), ops.slice(kv, (0, 0, 0), (b, extra, 2 * c))], -1
            )
            out_extra = self.conv_path(tokens.reshape(b * extra, 1, 1, 3 * c)).reshape(b, extra, c)
            out_conv = ops.concat([out_extra, out_conv], 1)

        out = self.rate1.astype(x.dtype) * out_att + self.rate2.astype(x.dtype) * out_conv
        return self.proj_drop(out)
