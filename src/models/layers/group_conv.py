"""Grouped convolution for the ACmix convolution path, in two interchangeable implementations.

MindSpore documents grouped ``Conv2D`` on Ascend only for the depthwise case
(``C_in == C_out == groups``), and the ACmix convolution path is not depthwise
(``3 * head`` inputs and ``head`` outputs per group).  Two implementations give
the same result:

* ``"conv"``: the ``Conv2D`` primitive with ``group=groups`` (GPU, CPU);
* ``"matmul"``: ``out = sum_tap W_tap @ shift_tap(x)`` with one
  (groups, C_out/g, C_in/g) matrix per kernel tap, from Concat (zero padding),
  Reshape, Slice, BroadcastTo, BatchMatMul and Add, all documented for Ascend,
  GPU and CPU.  Strides and dilations need no strided slicing: the zero-padded
  map is viewed as (H/s, s, W/s, s) and each tap reads one phase of it.

``"auto"`` (:func:`resolve_group_conv_impl`) takes ``"matmul"`` on Ascend and
``"conv"`` elsewhere.  It is resolved when a cell is built, from the device
target set at that moment: set the context before building a model, and pass
``group_conv_impl="matmul"`` explicitly when a model built elsewhere is meant
for Ascend (for example one exported to MindIR on a CPU).  docs/models.md gives what the two cost on a CPU.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Tensor, ops

__all__ = ["grouped_conv2d", "resolve_group_conv_impl", "zero_pad"]

GROUP_CONV_IMPLS = ("auto", "conv", "matmul")


def resolve_group_conv_impl(impl: str = "auto") -> str:
    """``"conv"`` or ``"matmul"``; ``"auto"`` picks ``"matmul"`` when the device target is Ascend.

    Args:
        impl: ``"auto"``, ``"conv"`` or ``"matmul"``.
    """
    if impl not in GROUP_CONV_IMPLS:
        raise ValueError(f"group_conv_impl must be one of {GROUP_CONV_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "matmul" if ms.get_context("device_target") == "Ascend" else "conv"
    return impl


def zero_pad(x: Tensor, axis: int, before: int, after: int) -> Tensor:
    """Zero padding of one axis by concatenation (``ops.pad`` is several times slower on the CPU backend).

    Args:
        x: input tensor.
        axis: axis to pad.
        before: zeros in front.
        after: zeros behind.
    """
    if before == 0 and after == 0:
        return x
    parts = []
    if before:
        shape = list(x.shape)
        shape[axis] = before
        parts.append(ops.zeros(tuple(shape), x.dtype))
    parts.append(x)
    if after:
        shape = list(x.shape)
        shape[axis] = after
        parts.append(ops.zeros(tuple(shape), x.dtype))
    return ops.concat(parts, axis)


def grouped_conv2d(
    x: Tensor, weight: Tensor, groups: int, stride: int = 1, dilation: int = 1, impl: str = "matmul"
) -> Tensor:
    """Grouped 2-D convolution with zero padding ``dilation * (k // 2)`` (odd k), no bias.

    Same result as ``ops.conv2d(x, weight, None, stride, "pad", dilation * (k // 2), dilation, groups)``;
    output ``ceil(H / stride) x ceil(W / stride)``.

    Args:
        x: input (B, C_in, H, W).
        weight: (C_out, C_in / groups, k, k), k odd.
        groups: number of groups; group g reads input channels [g*C_in/groups, (g+1)*C_in/groups)
            and writes output channels [g*C_out/groups, (g+1)*C_out/groups).
        stride: stride.
        dilation: dilation.
        impl: ``"matmul"`` (per-tap batched matmuls) or ``"conv"`` (the Conv2D primitive); see the module doc.
    """
    b, cin, h, w = x.shape
    cout, cin_g, k = weight.shape[0], weight.shape[1], weight.shape[2]
    cout_g = cout // groups
    s, pad = stride, dilation * (k // 2)
    if impl == "conv":
        # tuple attributes: the ONNX exporter cannot read the int forms
        conv = ops.Conv2D(
            cout, (k, k), pad_mode="pad", pad=(pad,) * 4, stride=(s, s), dilation=(dilation, dilation), group=groups
        )
        return conv(x, weight)
    ho, wo = (h + s - 1) // s, (w + s - 1) // s
    reach = (k - 1) * dilation // s + 1  # phase rows a tap may start at, plus one
    hp, wp = s * (ho + reach), s * (wo + reach)
    xp = zero_pad(zero_pad(x, 2, pad, hp - h - pad), 3, pad, wp - w - pad)
    phases = [xp]
    if s > 1:
        # one contiguous (B, C, hp/s, wp/s) map per phase (py, px); the taps then slice 4-D maps
        xp6 = xp.reshape(b, cin, hp // s, s, wp // s, s)
        phases = []
        for py in range(s):
            for px in range(s):
                part = ops.slice(xp6, (0, 0, 0, py, 0, px), (b, cin, hp // s, 1, wp // s, 1))
                phases.append(part.reshape(b, cin, hp // s, wp // s))
    taps = weight.reshape(groups, cout_g, cin_g, k * k).transpose(3, 0, 1, 2)  # (k*k, G, Cout/G, Cin/G)
    taps = ops.split(taps, 1, 0)
    out = None
    for ky in range(k):
        oy, py = divmod(ky * dilation, s)
        for kx in range(k):
            ox, px = divmod(kx * dilation, s)
            patch = ops.slice(phases[py * s + px], (0, 0, oy, ox), (b, cin, ho, wo)).reshape(b * groups, cin_g, ho * wo)
            # explicit batch instead of a broadcasting matmul, whose gradient fails in some graphs (MindSpore 2.8)
            tap = ops.broadcast_to(taps[ky * k + kx].reshape(1, groups, cout_g, cin_g), (b, groups, cout_g, cin_g))
            term = ops.bmm(tap.reshape(b * groups, cout_g, cin_g), patch)
            out = term if out is None else out + term
    return out.reshape(b, cout, ho, wo)
