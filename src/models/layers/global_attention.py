"""ACmix with global attention and spatial reduction, the PVT variant (ACmix paper, section 4.5, eq. 19).

Source: the ``Attention`` of PVT v1 (Wang et al., ICCV 2021; whai362/PVT, ``classification/pvt.py``), whose
parameter names it keeps, plus the ACmix convolution path (:mod:`.conv_path`); there is no official ACmix-PVT.

* Stage I is PVT's projections, computed once: ``q = q(x)`` on all H*W tokens and ``k, v = kv(norm(sr(x)))``
  on the map reduced ``sr_ratio``-fold.
* Attention path: ``softmax(q k^T * scale) v`` per head over the reduced keys, as PVT, then ``proj``.
* Convolution path: q at full resolution, k and v brought back to H x W by parameter-free nearest
  upsampling (:func:`nearest_upsample`), through ``fc`` (with a bias, as the Swin variant) and
  ``dep_conv``.  With ``sr_ratio`` 1 this is exactly the core cell's path.
* Output: ``rate1 * proj(attention) + rate2 * conv``, then ``proj_drop``.

Extra tokens (PVT's class token in the last stage) come first in ``x``; they take part in the attention as
in PVT, and the convolution path sees each of them as a 1x1 map of its own (only the centre taps reach it).
Differences from PVT's attention: the softmax runs in float32 (a float16 network would saturate over the
long key axis).  docs/models.md gives the reasoning and the designs that were not built.
"""

from __future__ import annotations

from typing import Optional

from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from .common import compact_transpose, layer_norm
from .conv_path import acmix_conv_path, build_conv_path
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

        build_conv_path(self, 3 * num_heads, dim, self.head_dim, kernel_conv, fc_bias=True)

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
