"""ACmix with SAN's patchwise self-attention (ACmix paper, CVPR 2022, section 4.5, eq. 17).

Source: SAN's ``SAM`` module with ``sa_type=1`` (Zhao et al., "Exploring Self-attention for Image
Recognition", CVPR 2020; hszhao/SAN, ``model/san.py``), whose keywords and parameter names it keeps
(``conv1/conv2/conv3``, ``conv_w.{0..5}``), plus the ACmix convolution path (``fc``, ``dep_conv``,
:mod:`.conv_path`) and the rates; there is no official ACmix-SAN.

* Stage I: ``x1 = conv1(x)``, ``x2 = conv2(x)`` (``rel_planes``) and ``x3 = conv3(x)`` (``mid_planes``), as
  one fused 1x1 convolution.
* Attention path (SAN's): weights ``conv_w([x1, unfold(x2)])`` per pixel and tap, aggregated over the
  reflection-padded ``k x k`` neighbourhood of x3; channel c uses weight channel ``c % (mid/share)``.
* Convolution path: ``[x1, x2, x3]`` cut into ``(2 rel + mid) / (mid/share)`` groups of ``mid/share``
  channels, the channels the attention ties to one weight channel, through ``fc`` and ``dep_conv``.
* Output: ``rate1 * F_att + rate2 * F_conv``.

Differences from SAN's ``SAM``, none of which changes a result where SAN runs: the aggregation sums the
``k*k`` taps with a hand-written backward instead of unfolding x3 (``agg_impl="unfold"`` keeps the unfold as
the reference); reflection folds again on maps not larger than ``kernel // 2``; ``stride > 1`` and
``dilation > 1`` work.  docs/models.md gives the reasoning, the costs and the measurements.
"""

from __future__ import annotations

from mindspore import Tensor, nn, ops

from .common import batch_norm, compact_transpose
from .conv_path import acmix_conv_path, build_conv_path, check_odd
from .group_conv import resolve_group_conv_impl, zero_pad
from .local_attention import clamp_stride_indices, reflect_indices

__all__ = ["PatchwiseAggregation", "PatchwiseAttentionACmix"]


class _TapSum(nn.Cell):
    """``out = sum_tap view_tap(x) * w_tap``, with a backward that keeps only x and w.

    Autograd would keep every tap's shifted copy of x for the backward (``k*k`` copies of x3); this
    backward re-slices them from x instead.  ``x`` is (B, s*s*S, Cw, Hq, Wq): the stride phases of the
    padded map, phase-major (phase ``py*s + px`` holds padded rows ``py::s``, columns ``px::s``).
    ``w`` is (B, k*k, Cw, Ho, Wo), tap-major.  Output (B, S, Cw, Ho, Wo).
    """

    def __init__(self, kernel: int, stride: int, dilation: int) -> None:
        super().__init__()
        taps = []
        for t in range(kernel * kernel):
            oy, py = divmod((t // kernel) * dilation, stride)
            ox, px = divmod((t % kernel) * dilation, stride)
            taps.append((t, py * stride + px, oy, ox))
        self.taps = tuple(taps)
        # the taps that read each phase, for the backward's per-phase accumulation (empty: zero gradient)
        self.phase_taps = tuple(tuple(tp for tp in taps if tp[1] == ph) for ph in range(stride * stride))
        self.reach = (kernel - 1) * dilation // stride  # largest tap offset inside a phase

    def construct(self, x: Tensor, w: Tensor) -> Tensor:
        b, _, cw, _, _ = x.shape
        ho, wo = w.shape[3], w.shape[4]
        s_ = x.shape[1] // len(self.phase_taps)
        out = ops.zeros((b, s_, cw, ho, wo), x.dtype)
        for t, ph, oy, ox in self.taps:
            # depend: cut each tap's view only when the running sum is ready, so that the CPU scheduler
            # does not hoist all k*k views to the front and keep them alive together
            xs = ops.slice(ops.depend(x, out), (0, ph * s_, 0, oy, ox), (b, s_, cw, ho, wo))
            w_t = ops.slice(ops.depend(w, out), (0, t, 0, 0, 0), (b, 1, cw, ho, wo))
            # explicit broadcast: the CPU Mul with an implicit one is slower and keeps a large workspace
            out = out + xs * ops.broadcast_to(w_t, (b, s_, cw, ho, wo))
        return out

    def bprop(self, x: Tensor, w: Tensor, out: Tensor, dout: Tensor):
        b, _, cw, hq, wq = x.shape
        ho, wo = w.shape[3], w.shape[4]
        s_ = dout.shape[1]
        r = self.reach
        # dx[phase, y] = sum_tap (w_tap * dout)[y - offset_tap]: slices of zero-padded dout and w
        gz = zero_pad(zero_pad(dout, 3, r, hq - ho), 4, r, wq - wo)
        wz = zero_pad(zero_pad(w, 3, r, hq - ho), 4, r, wq - wo)
        dx = []
        g = dout
        for taps in self.phase_taps:
            g = ops.depend(ops.zeros((b, s_, cw, hq, wq), x.dtype), g)
            for t, _, oy, ox in taps:
                g_t = ops.slice(ops.depend(gz, g), (0, 0, 0, r - oy, r - ox), (b, s_, cw, hq, wq))
                w_t = ops.slice(ops.depend(wz, g), (0, t, 0, r - oy, r - ox), (b, 1, cw, hq, wq))
                g = g + g_t * ops.broadcast_to(w_t, (b, s_, cw, hq, wq))
            dx.append(g)
        dw = []
        acc = dx[-1]
        for _, ph, oy, ox in self.taps:
            xs = ops.slice(ops.depend(x, acc), (0, ph * s_, 0, oy, ox), (b, s_, cw, ho, wo))
            acc = (xs * dout).sum(1, keepdims=True)
            dw.append(acc)
        return ops.concat(dx, 1), ops.concat(dw, 1)


class PatchwiseAggregation(nn.Cell):
    """SAN's aggregation with reflection padding: ``out[c, o] = sum_tap w[tap, c % Cw, o] * x[c, o*s + tap*d - p]``.

    ``p = dilation * (kernel - 1) / 2``; positions outside the map are reflected (folded again for
    maps not larger than ``p``, see :func:`reflect_indices`).

    Args:
        kernel: odd window size k.
        stride: output stride s; the output is ``ceil(H/s) x ceil(W/s)``.
        dilation: spacing d of the taps.
        impl: ``"tap"`` (default: per-tap accumulation, backward from x and w only) or ``"unfold"``
            (``ops.unfold`` of x, ``k*k`` times larger; the reference).

    Inputs: ``x`` (B, C, H, W) and ``w`` (B, k*k, Cw, Ho, Wo), tap-major, with C a multiple of Cw.
    Output: (B, C, Ho, Wo).
    """

    def __init__(self, kernel: int, stride: int = 1, dilation: int = 1, impl: str = "tap") -> None:
        super().__init__()
        check_odd("PatchwiseAggregation", "kernel", kernel)
        if stride < 1 or dilation < 1:
            raise ValueError(f"PatchwiseAggregation: stride and dilation must be >= 1, got {stride}, {dilation}")
        if impl not in ("tap", "unfold"):
            raise ValueError(f"PatchwiseAggregation: impl must be 'tap' or 'unfold', got {impl!r}")
        self.kernel, self.stride, self.dilation, self.impl = kernel, stride, dilation, impl
        self.pad = dilation * (kernel - 1) // 2
        self.tap_sum = _TapSum(kernel, stride, dilation)

    def construct(self, x: Tensor, w: Tensor) -> Tensor:
        b, c, h, wd = x.shape
        cw, ho, wo = w.shape[2], w.shape[3], w.shape[4]
        k, s, p = self.kernel, self.stride, self.pad
        if self.impl == "unfold":
            xp = ops.gather(ops.gather(x, reflect_indices(h, p, h + 2 * p), 2), reflect_indices(wd, p, wd + 2 * p), 3)
            u = ops.unfold(xp, k, dilation=self.dilation, stride=s).reshape(b, c // cw, cw, k * k, ho, wo)
            wb = ops.broadcast_to(compact_transpose(w, (0, 2, 1, 3, 4)).reshape(b, 1, cw, k * k, ho, wo), u.shape)
            return (u * wb).sum(3).reshape(b, c, ho, wo)
        hq, wq = ho + self.tap_sum.reach + 1, wo + self.tap_sum.reach + 1  # rows/columns of one phase
        xp = ops.gather(ops.gather(x, reflect_indices(h, p, s * hq), 2), reflect_indices(wd, p, s * wq), 3)
        if s == 1:
            xph = xp.reshape(b, c // cw, cw, hq, wq)
        else:
            xph = compact_transpose(xp.reshape(b, c, hq, s, wq, s), (0, 3, 5, 1, 2, 4)).reshape(
                b, s * s * c // cw, cw, hq, wq
            )
        return self.tap_sum(xph, w).reshape(b, c, ho, wo)


class PatchwiseAttentionACmix(nn.Cell):
    """SAN's patchwise SAM module with the ACmix convolution path (see the module docstring).

    Args:
        in_planes: input channels.
        rel_planes: channels of x1 and x2 (query and key features; SAN: planes / 16).
        mid_planes: channels of x3 and of the output (SAN: planes / 4).
        share_planes: channels sharing one aggregation weight; ``mid_planes`` must be divisible by it,
            and ``rel_planes`` by ``mid_planes // share_planes``.
        kernel_att: patchwise attention window (odd).
        kernel_conv: kernel of the convolution path (odd).
        stride: stride of both paths; outputs are ``ceil(H/s) x ceil(W/s)``.
        dilation: spacing of the attention taps and of the convolution path's kernel.
        group_conv_impl: ``"auto"``, ``"conv"`` or ``"matmul"``: how the convolution path's grouped
            convolution is computed (same result, see :class:`~src.models.layers.ACmix`).
        agg_impl: ``"tap"`` (default) or ``"unfold"`` (reference), see :class:`PatchwiseAggregation`.
    """

    def __init__(
        self,
        in_planes: int,
        rel_planes: int,
        mid_planes: int,
        share_planes: int = 8,
        kernel_att: int = 7,
        kernel_conv: int = 3,
        stride: int = 1,
        dilation: int = 1,
        group_conv_impl: str = "auto",
        *,
        agg_impl: str = "tap",
    ) -> None:
        super().__init__()
        check_odd("PatchwiseAttentionACmix", "kernel_att", kernel_att)
        if min(in_planes, rel_planes, mid_planes, share_planes) < 1 or mid_planes % share_planes:
            raise ValueError(
                f"PatchwiseAttentionACmix: positive channels needed and mid_planes ({mid_planes}) divisible by "
                f"share_planes ({share_planes})"
            )
        cw = mid_planes // share_planes
        if rel_planes % cw:
            raise ValueError(
                f"PatchwiseAttentionACmix: rel_planes ({rel_planes}) must be a multiple of mid_planes // share_planes "
                f"({cw}): the convolution path cuts q, k and v into groups of that many channels"
            )
        if stride < 1 or dilation < 1:
            raise ValueError(f"PatchwiseAttentionACmix: stride and dilation must be >= 1, got {stride}, {dilation}")
        self.in_planes, self.rel_planes, self.mid_planes = in_planes, rel_planes, mid_planes
        self.share_planes, self.weight_planes = share_planes, cw
        self.kernel_att, self.kernel_conv = kernel_att, kernel_conv
        self.stride, self.dilation = stride, dilation
        self.groups3 = (2 * rel_planes + mid_planes) // cw
        self.group_conv_impl = resolve_group_conv_impl(group_conv_impl)
        k2 = kernel_att * kernel_att
        # the Conv2D primitive is documented for Ascend, GPU and CPU (the functional ops.conv2d omits CPU)
        # tuple attributes, which the ONNX exporter needs
        self._conv1x1 = ops.Conv2D(
            2 * rel_planes + mid_planes, (1, 1), pad=(0, 0, 0, 0), stride=(1, 1), dilation=(1, 1)
        )
        self._conv_w_last = ops.Conv2D(out_channel=k2 * cw, kernel_size=1)

        self.conv1 = nn.Conv2d(in_planes, rel_planes, 1, has_bias=True)
        self.conv2 = nn.Conv2d(in_planes, rel_planes, 1, has_bias=True)
        self.conv3 = nn.Conv2d(in_planes, mid_planes, 1, has_bias=True)
        self.conv_w = nn.SequentialCell(
            [
                batch_norm(rel_planes * (k2 + 1)),
                nn.ReLU(),
                nn.Conv2d(rel_planes * (k2 + 1), cw, 1, has_bias=False),
                batch_norm(cw),
                nn.ReLU(),
                nn.Conv2d(cw, k2 * cw, 1, has_bias=True),
            ]
        )
        self.aggregation = PatchwiseAggregation(kernel_att, stride, dilation, agg_impl)
        build_conv_path(self, self.groups3, mid_planes, cw, kernel_conv, stride, dilation)

    def stage1(self, x: Tensor) -> Tensor:
        """Stage I: conv1, conv2, conv3 as one 1x1 convolution; (B, 2*rel + mid, H, W) = [x1, x2, x3]."""
        w = ops.concat([self.conv1.weight, self.conv2.weight, self.conv3.weight], 0).astype(x.dtype)
        bias = ops.concat([self.conv1.bias, self.conv2.bias, self.conv3.bias], 0).astype(x.dtype)
        return ops.bias_add(self._conv1x1(x, w), bias)

    def construct(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        rel, mid, cw = self.rel_planes, self.mid_planes, self.weight_planes
        k, s, d = self.kernel_att, self.stride, self.dilation
        ho, wo = (h + s - 1) // s, (w + s - 1) // s
        feats = self.stage1(x)

        # Stage II, convolution path: group j of the grouped convolution reads index j of all G3 feature groups
        grouped = compact_transpose(feats.reshape(b, self.groups3, cw, h, w), (0, 2, 1, 3, 4)).reshape(
            b, cw * self.groups3, h, w
        )
        out_conv = acmix_conv_path(grouped, self.fc.weight, None, self.dep_conv.weight, cw, s, d, self.group_conv_impl)

        # Stage II, attention path
        x1 = ops.slice(feats, (0, 0, 0, 0), (b, rel, h, w))
        x2 = ops.slice(feats, (0, rel, 0, 0), (b, rel, h, w))
        x3 = ops.slice(feats, (0, 2 * rel, 0, 0), (b, mid, h, w))
        if s > 1:
            x1 = ops.gather(ops.gather(x1, clamp_stride_indices(h, s, ho), 2), clamp_stride_indices(w, s, wo), 3)
        p = d * (k - 1) // 2
        x2 = ops.gather(ops.gather(x2, reflect_indices(h, p, h + 2 * p), 2), reflect_indices(w, p, w + 2 * p), 3)
        x2 = ops.unfold(x2, k, dilation=d, stride=s).reshape(b, rel * k * k, ho, wo)  # channel c*k*k + tap
        weight = ops.concat([x1, x2], 1)
        for i in range(5):
            weight = self.conv_w[i](weight)
        # conv_w's last 1x1 convolution with its output rows reordered tap-major (official order: j*k*k + tap),
        # so that the aggregation reads each tap's weights as one contiguous block
        last = self.conv_w[5]
        wl = compact_transpose(last.weight.reshape(cw, k * k, cw, 1, 1), (1, 0, 2, 3, 4)).reshape(k * k * cw, cw, 1, 1)
        bl = last.bias.reshape(cw, k * k).transpose(1, 0).reshape(k * k * cw)
        weight = ops.bias_add(self._conv_w_last(weight, wl.astype(x.dtype)), bl.astype(x.dtype))
        out_att = self.aggregation(x3, weight.reshape(b, k * k, cw, ho, wo))

        return self.rate1.astype(x.dtype) * out_att + self.rate2.astype(x.dtype) * out_conv
