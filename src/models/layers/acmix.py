"""The ACmix core cell (Pan et al., "On the Integration of Self-Attention and Convolution", CVPR 2022).

Source: the official ``ACmix`` module of LeapLabTHU/ACmix (``ResNet/test_bottleneck.py``), with the same
parameter names.  Stage I is three 1x1 projections (``conv1``, ``conv2``, ``conv3``), computed once as one
convolution; Stage II feeds them to SASA-style local attention with the official relative positional
encoding (``conv_p``) and to the convolution path (``fc``, ``dep_conv``, :mod:`.conv_path`); the output is
``rate1 * attention + rate2 * convolution``.

Differences from the official module, none of which changes a result where the official code runs:

* The attention is evaluated tile by tile (:func:`blocked_local_attention`) instead of unfolding keys and
  values 49-fold; the ``q . pe_q`` term, the same for every neighbour of a query, is not computed.
* The convolution path is one grouped convolution, ``fc`` composed with ``dep_conv`` (:func:`acmix_conv_path`).
* Where the official code crashes, the cell does the natural thing: any odd ``kernel_conv``, odd feature
  sizes with stride 2 (``ceil(H/s) x ceil(W/s)`` outputs), ``dilation > 1``, maps not larger than
  ``kernel_att // 2`` (see :func:`reflect_indices`).  Even kernels are rejected.

docs/models.md gives the mapping to the paper's equations and the reasoning.
"""

from __future__ import annotations

from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from .conv_path import acmix_conv_path, build_conv_path, check_odd, compose_conv_path, shift_kernel
from .group_conv import resolve_group_conv_impl
from .local_attention import blocked_local_attention, unfold_local_attention

# the convolution-path functions live in .conv_path; they stay importable from here
__all__ = ["ACmix", "shift_kernel", "position_map", "compose_conv_path", "acmix_conv_path"]


def position_map(h: int, w: int, dtype: mstype.Type = mstype.float32) -> Tensor:
    """Coordinate map (1, 2, H, W): channel 0 is x = linspace(-1, 1, W), channel 1 is y = linspace(-1, 1, H).

    Args:
        h: map height.
        w: map width.
        dtype: result dtype.
    """

    def lin(n: int) -> Tensor:
        if n == 1:
            return ops.full((1,), -1.0, dtype=mstype.float32)
        return ops.arange(0, n).astype(mstype.float32) * (2.0 / (n - 1)) - 1.0

    xs = ops.broadcast_to(lin(w).reshape(1, w), (h, w))
    ys = ops.broadcast_to(lin(h).reshape(h, 1), (h, w))
    return ops.stack((xs, ys)).reshape(1, 2, h, w).astype(dtype)


class ACmix(nn.Cell):
    """ACmix module of the ResNet variant (replaces a 3x3 convolution).

    Args:
        in_planes: input channels.
        out_planes: output channels; must be divisible by ``head``.
        kernel_att: attention window size (odd).
        head: number of attention heads.
        kernel_conv: kernel size of the convolution path (odd).
        stride: spatial stride of both paths; outputs are ``ceil(H/s) x ceil(W/s)``.
        dilation: spacing of the attention window taps and of the convolution path's kernel.
        attn_impl: ``"blocked"`` (default, tile-wise, memory-lean) or ``"unfold"``
            (the official k**2-expanded formulation, for reference; dilation 1 only).
        block_size: tile size of the blocked attention (speed/memory only, results are identical).
        group_conv_impl: ``"auto"`` (default: ``"matmul"`` on Ascend, ``"conv"`` elsewhere), ``"conv"``
            or ``"matmul"``; how the convolution path's grouped convolution is computed (same result).
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_att: int = 7,
        head: int = 4,
        kernel_conv: int = 3,
        stride: int = 1,
        dilation: int = 1,
        *,
        attn_impl: str = "blocked",
        block_size: int = 8,
        group_conv_impl: str = "auto",
    ) -> None:
        super().__init__()
        check_odd("ACmix", "kernel_att", kernel_att)
        if head < 1 or out_planes % head != 0:
            raise ValueError(f"ACmix: out_planes ({out_planes}) must be divisible by head ({head})")
        if stride < 1 or dilation < 1:
            raise ValueError(f"ACmix: stride and dilation must be >= 1, got stride={stride}, dilation={dilation}")
        if attn_impl not in ("blocked", "unfold"):
            raise ValueError(f"ACmix: attn_impl must be 'blocked' or 'unfold', got {attn_impl!r}")
        if attn_impl == "unfold" and dilation != 1:
            raise ValueError("ACmix: attn_impl='unfold' supports dilation=1 only")
        if block_size < 1:
            raise ValueError(f"ACmix: block_size must be >= 1, got {block_size}")
        self.in_planes = in_planes
        self.out_planes = out_planes
        self.head = head
        self.head_dim = out_planes // head
        self.kernel_att = kernel_att
        self.kernel_conv = kernel_conv
        self.stride = stride
        self.dilation = dilation
        self.attn_impl = attn_impl
        self.block_size = block_size
        self.group_conv_impl = resolve_group_conv_impl(group_conv_impl)
        self.scaling = float(self.head_dim) ** -0.5
        # the Conv2D primitive is documented for Ascend, GPU and CPU (the functional ops.conv2d omits CPU)
        # tuple attributes, which the ONNX exporter needs
        self._conv1x1 = ops.Conv2D(3 * out_planes, (1, 1), pad=(0, 0, 0, 0), stride=(1, 1), dilation=(1, 1))

        self.conv1 = nn.Conv2d(in_planes, out_planes, 1, has_bias=True)
        self.conv2 = nn.Conv2d(in_planes, out_planes, 1, has_bias=True)
        self.conv3 = nn.Conv2d(in_planes, out_planes, 1, has_bias=True)
        self.conv_p = nn.Conv2d(2, self.head_dim, 1, has_bias=True)
        build_conv_path(self, 3 * head, out_planes, self.head_dim, kernel_conv, stride, dilation)

    def stage1(self, x: Tensor) -> Tensor:
        """Stage I: the three 1x1 projections in one convolution.

        Output (B, 3*O, H, W) with channel ``d * 3*head + t * head + h`` holding
        projection t (q, k, v) of head h at index d, the order in which the
        convolution path's groups (one per d) read their ``3 * head`` inputs.
        """
        nh, hd = self.head, self.head_dim
        cin = self.in_planes
        w = ops.stack((self.conv1.weight, self.conv2.weight, self.conv3.weight))  # (3, O, Cin, 1, 1)
        w = w.reshape(3, nh, hd, cin).transpose(2, 0, 1, 3).reshape(3 * self.out_planes, cin, 1, 1)
        bias = ops.stack((self.conv1.bias, self.conv2.bias, self.conv3.bias))
        bias = bias.reshape(3, nh, hd).transpose(2, 0, 1).reshape(3 * self.out_planes)
        return ops.bias_add(self._conv1x1(x, w.astype(x.dtype)), bias.astype(x.dtype))

    def construct(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        nh, hd = self.head, self.head_dim
        qkv = self.stage1(x)

        # Stage II, convolution path: fc composed with the shift group convolution.
        out_conv = acmix_conv_path(
            qkv, self.fc.weight, None, self.dep_conv.weight, hd, self.stride, self.dilation, self.group_conv_impl
        )

        # Stage II, attention path.
        qkv6 = qkv.reshape(b, hd, 3, nh, h, w)
        q = ops.slice(qkv6, (0, 0, 0, 0, 0, 0), (b, hd, 1, nh, h, w)).reshape(b, hd, nh, h, w)
        k = ops.slice(qkv6, (0, 0, 1, 0, 0, 0), (b, hd, 1, nh, h, w)).reshape(b, hd, nh, h, w)
        v = ops.slice(qkv6, (0, 0, 2, 0, 0, 0), (b, hd, 1, nh, h, w)).reshape(b, hd, nh, h, w)
        pe = self.conv_p(position_map(h, w)).astype(x.dtype).reshape(1, hd, 1, h, w)
        q = q * self.scaling
        k = k - pe  # the q.pe_q term is constant over the window and cancels in the softmax
        if self.attn_impl == "blocked":
            out_att = blocked_local_attention(q, k, v, self.kernel_att, self.stride, self.dilation, self.block_size)
        else:
            out_att = unfold_local_attention(q, k, v, self.kernel_att, self.stride)

        return self.rate1.astype(x.dtype) * out_att + self.rate2.astype(x.dtype) * out_conv
