"""The ACmix core cell (Pan et al., "On the Integration of Self-Attention and Convolution", CVPR 2022).

Mapping to the paper (section 3.3, Fig. 2):

* **Stage I** (eq. 12-13, shared by both paths): three 1x1 projections of the
  input, ``q = conv1(x)``, ``k = conv2(x)``, ``v = conv3(x)``, each producing
  ``out_planes = head * head_dim`` channels.  They are evaluated once, as a
  single 1x1 convolution with the three weights stacked, and reused by the two
  Stage II paths.
* **Stage II, self-attention path** (eq. 5-6, SASA-style local attention with
  the official relative positional encoding): every query pixel attends to its
  ``kernel_att x kernel_att`` neighbourhood.  The positional encoding is
  ``pe = conv_p(coordinates)`` on a (x, y) in [-1, 1] grid, and the logit of
  neighbour n is ``q . (k_n + pe_q - pe_n) / sqrt(head_dim)``.
* **Stage II, convolution path** (eq. 13 and section 3.4): the light
  fully-connected layer ``fc`` maps the ``3 * head`` feature groups (all q heads,
  all k heads, all v heads) to ``kernel_conv**2`` maps, which are shifted and
  summed by ``dep_conv``, a group convolution whose kernels start as shift
  kernels (one-hot at tap j for input map j) and are learnable.
* **Output** (eq. 14): ``rate1 * F_att + rate2 * F_conv`` with learnable scalars
  initialised to 0.5.

Differences from the official PyTorch module (``ResNet/test_bottleneck.py``),
none of which changes a result where the official code runs:

* The attention is evaluated tile by tile (:func:`blocked_local_attention`)
  instead of unfolding keys and values 49-fold; the ``q . pe_q`` term, the same
  for every neighbour of a query, cancels in the softmax and is not computed.
* ``fc`` and ``dep_conv`` are both linear, so the convolution path is evaluated
  as one group convolution whose kernel is ``fc`` composed with ``dep_conv``
  (``W[o, g] = sum_j fc[j, g] * dep_conv[o, j]``), directly on the Stage I
  output (:func:`grouped_conv2d`; on Ascend, where MindSpore documents only
  depthwise grouped convolutions, as per-tap matrix products).  The learnable
  parameters are exactly the official ones.
* Where the official code crashes, this cell does the natural thing:
  ``kernel_conv`` of any odd size (the official padding is hard-coded to 1);
  odd feature sizes with stride 2 (both paths give ``ceil(H/s) x ceil(W/s)``);
  ``dilation > 1`` (a dilated attention neighbourhood and a dilated convolution
  path); maps not larger than ``kernel_att // 2`` (the reflection padding is
  folded again at the borders, see :func:`reflect_indices`; a 1-pixel axis
  repeats its pixel).  Even kernels are rejected: they have no centre.
* ``dep_conv`` has no bias, as in the official module, whose
  ``reset_parameters`` removes it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype

from .group_conv import grouped_conv2d, resolve_group_conv_impl
from .local_attention import blocked_local_attention, unfold_local_attention

__all__ = ["ACmix", "shift_kernel", "position_map", "compose_conv_path", "acmix_conv_path"]


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


def compose_conv_path(fc_weight: Tensor, dep_weight: Tensor) -> Tensor:
    """Kernel of ``dep_conv(fc(.))`` as one group convolution: (O, G3, kc, kc).

    ``fc_weight`` is (kc**2, G3, 1, 1) (G3 = 3 * head feature groups) and
    ``dep_weight`` is (O, kc**2, kc, kc); the result is
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
        fc_bias: its (kc**2,) bias (the Swin variant has one) or None.
        dep_weight: (O, kc**2, kc, kc) weight of the shift group convolution (no bias).
        groups: head_dim, the number of groups of ``dep_conv``.
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


def _check_odd(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(f"ACmix: {name} must be an odd positive integer (a window needs a centre), got {value!r}")


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
        _check_odd("kernel_att", kernel_att)
        _check_odd("kernel_conv", kernel_conv)
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

        self.rate1 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate1")
        self.rate2 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate2")
        self.conv1 = nn.Conv2d(in_planes, out_planes, 1, has_bias=True)
        self.conv2 = nn.Conv2d(in_planes, out_planes, 1, has_bias=True)
        self.conv3 = nn.Conv2d(in_planes, out_planes, 1, has_bias=True)
        self.conv_p = nn.Conv2d(2, self.head_dim, 1, has_bias=True)
        taps = kernel_conv * kernel_conv
        self.fc = nn.Conv2d(3 * head, taps, 1, has_bias=False)
        self.dep_conv = nn.Conv2d(
            taps * self.head_dim,
            out_planes,
            kernel_conv,
            stride=stride,
            pad_mode="pad",
            padding=dilation * (kernel_conv // 2),
            dilation=dilation,
            group=self.head_dim,
            has_bias=False,
            weight_init=Tensor(shift_kernel(out_planes, kernel_conv)),
        )

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
