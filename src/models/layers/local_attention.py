"""Sliding-window (SASA-style) local self-attention, computed block by block.

The official ACmix unfolds keys and values into ``k_att**2``-times larger tensors
(``nn.Unfold``), which is what makes it memory-hungry (2 x 49 x C x H x W floats
per image at ``k_att=7``).  Here the output map is cut into ``block x block``
tiles of queries.  Each tile attends to the *halo* of keys/values that covers
the windows of all its queries, ``(block-1)*stride + dilation*(k-1) + 1``
pixels wide, with two batched matrix products; a constant additive mask keeps
for every query exactly its own ``k x k`` (dilated) neighbourhood.  Keys and
values are copied about ``((block + 2p) / block)**2`` times (3x for block 8,
k 7) instead of ``k**2`` (49x), and only the ``block**2 x halo**2`` logits of a
tile are materialised.  The arithmetic is the official one: the same logits,
the same softmax over the same ``k**2`` neighbours, the same weighted sum.

Index handling uses ``ops.gather`` with static index vectors, which is both the
padding (reflection, see :func:`reflect_indices`) and the striding of the
queries; both are faster on the MindSpore CPU backend than ``ops.pad`` with
``mode="reflect"`` and strided slicing, and all operators used here (Gather,
BatchMatMul, Softmax, Transpose, Reshape, Slice, Stack) are documented for
Ascend, GPU and CPU.
"""

from __future__ import annotations

from mindspore import Tensor, ops
from mindspore import dtype as mstype

from .common import compact_transpose

__all__ = ["reflect_indices", "clamp_stride_indices", "blocked_local_attention", "unfold_local_attention"]

_NEG = -1e9  # additive mask value for the fp32 logits; exp() of it is exactly 0


def reflect_indices(size: int, before: int, total: int) -> Tensor:
    """Indices that pad an axis of ``size`` by reflection.

    Position ``i`` of the padded axis (``0 <= i < total``) reads source index
    ``reflect(i - before)``, where ``reflect`` mirrors at both ends without
    repeating the edge pixel, like ``ReflectionPad2d``.  Reflection is applied
    again as often as needed (a periodic fold with period ``2 * (size - 1)``),
    so padding may exceed ``size - 1``: this is the defined behaviour for maps
    that are smaller than the attention window, where ``ReflectionPad2d`` (and
    therefore the official code) fails.  Wherever ``ReflectionPad2d`` works the
    result is identical to it.  A size-1 axis repeats its only pixel.

    Args:
        size: length of the source axis.
        before: padding in front of the axis.
        total: length of the padded axis to produce.
    """
    if size == 1:
        return ops.zeros((total,), mstype.int32)
    idx = ops.arange(-before, total - before, dtype=mstype.int32)
    period = 2 * (size - 1)
    # |idx| mod period in float32 (exact for these small integers): the ONNX exporter expands an integer
    # FloorMod into casts that it names after the shared divisor, and two of them make an invalid model
    dist = ops.abs(idx).astype(mstype.float32)
    folded = dist - ops.floor(dist / float(period)) * float(period)
    return ops.minimum(folded, float(period) - folded).astype(mstype.int32)


def clamp_stride_indices(size: int, stride: int, total: int) -> Tensor:
    """Indices ``0, s, 2s, ...`` (``total`` of them), clamped to ``size - 1``.

    Used to subsample queries (``x[..., ::s, ::s]``) and at the same time pad the
    query grid up to a multiple of the block size; padded queries repeat the last
    row/column and their outputs are cropped away.

    Args:
        size: length of the source axis.
        stride: subsampling step.
        total: number of indices to produce.
    """
    return ops.minimum(ops.arange(0, total, dtype=mstype.int32) * stride, size - 1)


def _window_mask(block: int, halo: int, stride: int, dilation: int, kernel: int) -> Tensor:
    """(block, halo) boolean: halo position j lies in the window of tile query i."""
    rel = ops.arange(0, halo, dtype=mstype.int32).reshape(1, halo)
    rel = rel - ops.arange(0, block, dtype=mstype.int32).reshape(block, 1) * stride
    inside = ops.logical_and(rel >= 0, rel <= dilation * (kernel - 1))
    if dilation == 1:
        return inside
    return ops.logical_and(inside, ops.floor_mod(rel, dilation) == 0)


def _tiles(x: Tensor, n_rows: int, n_cols: int, size_h: int, size_w: int, step_h: int, step_w: int) -> Tensor:
    """Cut (B, D, G, H, W) into overlapping tiles -> (B*G*n_rows*n_cols, size_h*size_w, D)."""
    b, d, g = x.shape[0], x.shape[1], x.shape[2]
    w = x.shape[4]
    if n_rows == 1:
        rows = ops.slice(x, (0, 0, 0, 0, 0), (b, d, g, size_h, w)).expand_dims(3)
    else:
        rows = ()  # a tuple, not a list: lists become make_list nodes, which the ONNX exporter rejects
        for i in range(n_rows):
            rows = rows + (ops.slice(x, (0, 0, 0, i * step_h, 0), (b, d, g, size_h, w)),)
        rows = ops.stack(rows, 3)
    if n_cols == 1:
        tiles = ops.slice(rows, (0, 0, 0, 0, 0, 0), (b, d, g, n_rows, size_h, size_w)).expand_dims(5)
    else:
        cols = ()
        for j in range(n_cols):
            cols = cols + (ops.slice(rows, (0, 0, 0, 0, 0, j * step_w), (b, d, g, n_rows, size_h, size_w)),)
        tiles = ops.stack(cols, 5)
    # (B, D, G, nr, sh, nc, sw) -> (B, G, nr, nc, sh, sw, D)
    tiles = compact_transpose(tiles, (0, 2, 3, 5, 4, 6, 1))
    return tiles.reshape(b * g * n_rows * n_cols, size_h * size_w, d)


def blocked_local_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    kernel: int,
    stride: int = 1,
    dilation: int = 1,
    block: int = 8,
) -> Tensor:
    """Sliding-window attention of every (strided) query over its ``kernel x kernel`` neighbourhood.

    Output pixel ``(i, j)`` queries input pixel ``(i*s, j*s)`` and attends to the
    (reflection-padded) input pixels ``(i*s + dy, j*s + dx)`` with
    ``dy, dx in {-p, -p+d, ..., p}``, ``p = d*(kernel-1)//2``, exactly as the
    official unfold formulation does for ``d = 1``.

    Args:
        q: queries at full resolution, (B, D, G, H, W), already scaled; D is the
            reduced (head) dimension, G the number of heads.
        k: keys at full resolution, (B, D, G, H, W), any positional term already
            folded in (broadcastable over B and G is not enough: pass the full shape).
        v: values at full resolution, (B, D, G, H, W).
        kernel: odd window size.
        stride: query subsampling; the output is ceil(H/s) x ceil(W/s).
        dilation: spacing of the window's taps.
        block: tile size in output pixels (a speed/memory trade-off, not a semantic one).

    Returns:
        (B, G*D, ceil(H/s), ceil(W/s)), channel ``g*D + d`` (head-major, as the official code).
    """
    b, d, g, h, w = q.shape
    ho, wo = (h + stride - 1) // stride, (w + stride - 1) // stride
    pad = dilation * (kernel - 1) // 2
    bh, bw = min(block, ho), min(block, wo)
    nbh, nbw = (ho + bh - 1) // bh, (wo + bw - 1) // bw
    hh = (bh - 1) * stride + dilation * (kernel - 1) + 1  # halo height
    hw = (bw - 1) * stride + dilation * (kernel - 1) + 1
    need_h = (nbh - 1) * bh * stride + hh  # rows the last tile's halo reaches (beyond H+2p only for cropped queries)
    need_w = (nbw - 1) * bw * stride + hw

    qs = ops.gather(q, clamp_stride_indices(h, stride, nbh * bh), 3)
    qs = ops.gather(qs, clamp_stride_indices(w, stride, nbw * bw), 4)
    q_t = _tiles(qs, nbh, nbw, bh, bw, bh, bw)  # (T, bh*bw, D)

    rows, cols = reflect_indices(h, pad, need_h), reflect_indices(w, pad, need_w)
    k_t = _tiles(ops.gather(ops.gather(k, rows, 3), cols, 4), nbh, nbw, hh, hw, bh * stride, bw * stride)
    v_t = _tiles(ops.gather(ops.gather(v, rows, 3), cols, 4), nbh, nbw, hh, hw, bh * stride, bw * stride)

    mask = ops.logical_and(
        _window_mask(bh, hh, stride, dilation, kernel).reshape(bh, 1, hh, 1),
        _window_mask(bw, hw, stride, dilation, kernel).reshape(1, bw, 1, hw),
    )
    bias = ops.select(mask, ops.zeros((), mstype.float32), ops.full((), _NEG, dtype=mstype.float32))

    # the softmax runs in fp32 (also under fp16 mixed precision), so the mask value stays finite
    logits = ops.bmm(q_t, k_t.transpose(0, 2, 1)).astype(mstype.float32) + bias.reshape(bh * bw, hh * hw)
    attn = ops.softmax(logits, -1).astype(v_t.dtype)
    out = ops.bmm(attn, v_t)  # (T, bh*bw, D)
    out = compact_transpose(out.reshape(b, g, nbh, nbw, bh, bw, d), (0, 1, 6, 2, 4, 3, 5))
    out = out.reshape(b, g * d, nbh * bh, nbw * bw)
    return ops.slice(out, (0, 0, 0, 0), (b, g * d, ho, wo))


def unfold_local_attention(q: Tensor, k: Tensor, v: Tensor, kernel: int, stride: int = 1) -> Tensor:
    """The official formulation (``ops.unfold`` = Im2Col): k**2-expanded keys and values.

    Kept as a reference and as the baseline of the ``module_unfold_*`` cases of ``benchmarks/bench.py``;
    same arguments and result as :func:`blocked_local_attention` (dilation 1).

    Args:
        q: (B, D, G, H, W) scaled queries.
        k: (B, D, G, H, W) keys, positional term folded in.
        v: (B, D, G, H, W) values.
        kernel: odd window size.
        stride: query subsampling.
    """
    b, d, g, h, w = q.shape
    ho, wo = (h + stride - 1) // stride, (w + stride - 1) // stride
    pad = (kernel - 1) // 2
    q = compact_transpose(q, (0, 2, 1, 3, 4)).reshape(b * g, d, h, w)
    q = ops.gather(ops.gather(q, clamp_stride_indices(h, stride, ho), 2), clamp_stride_indices(w, stride, wo), 3)
    rows = reflect_indices(h, pad, h + 2 * pad)
    cols = reflect_indices(w, pad, w + 2 * pad)

    def unfold(x: Tensor) -> Tensor:
        x = compact_transpose(x, (0, 2, 1, 3, 4)).reshape(b * g, d, h, w)
        x = ops.gather(ops.gather(x, rows, 2), cols, 3)
        x = ops.unfold(x, kernel, stride=stride)  # (b*g, d*k*k, L)
        return x.reshape(b * g, d, kernel * kernel, ho, wo)

    logits = (q.expand_dims(2) * unfold(k)).sum(1)
    attn = ops.softmax(logits, 1)
    out = (attn.expand_dims(1) * unfold(v)).sum(2)
    return out.reshape(b, g * d, ho, wo)
