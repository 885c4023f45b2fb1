"""Multiply-accumulate (MAC) counts of the models, derived from their structure by shape propagation.

What is counted: the multiply-adds of convolutions and dense layers, and the
attention's own products (query-key logits and the weighted sum of values).
Norms, activations, softmax, pooling, additions and the positional-encoding
subtraction are not counted.  This convention reproduces the official
ACmix-ResNet figures exactly (2.22G, 2.86G, 3.50G at 224x224).

Each supported cell class has a rule ``rule(cell, shape) -> (macs, out_shape)``
that reads the cell's own configuration (channels, kernels, strides, heads,
windows) and recurses into its children; nothing is typed in per model.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

from mindspore import nn

from .acmix_pvt import PVTBlock, PyramidVisionTransformerACmix
from .acmix_resnet import ACmixResNet, Bottleneck
from .acmix_san import ACmixSAN, SANBottleneck
from .acmix_swin import BasicLayer, PatchMerging, SwinTransformerACmix, SwinTransformerBlock
from .layers import ACmix
from .layers.attention import GlobalACmix2d, WindowACmix2d
from .layers.common import DropPath, ErfGELU, Mlp, PatchEmbed
from .layers.global_attention import GlobalAttentionACmix
from .layers.patchwise_attention import PatchwiseAttentionACmix
from .layers.window_attention import WindowAttentionACmix

__all__ = ["count_macs", "count_params"]

Shape = Tuple[int, ...]
_RULES: Dict[type, Callable[[nn.Cell, Shape], Tuple[int, Shape]]] = {}
_ZERO_COST = (nn.BatchNorm2d, nn.LayerNorm, nn.ReLU, nn.GELU, ErfGELU, nn.Dropout, DropPath, nn.Identity)


def _rule(cls: type):
    def register(fn):
        _RULES[cls] = fn
        return fn

    return register


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def count_macs(cell: nn.Cell, shape: Shape) -> int:
    """Multiply-accumulates of one forward pass of ``cell`` on an input of ``shape``.

    Args:
        cell: a model or a supported cell.
        shape: input shape, batch included (MACs scale with the batch).
    """
    return _macs(cell, tuple(int(s) for s in shape))[0]


def count_params(cell: nn.Cell) -> int:
    """Number of trainable parameters (what the official code's ``parameters()`` counts).

    Args:
        cell: a model or a cell.
    """
    return sum(int(p.size) for p in cell.trainable_params())


def _macs(cell: nn.Cell, shape: Shape) -> Tuple[int, Shape]:
    if isinstance(cell, _ZERO_COST):
        return 0, shape
    for cls in type(cell).__mro__:
        if cls in _RULES:
            return _RULES[cls](cell, shape)
    raise NotImplementedError(f"no MAC rule for {type(cell).__name__}; add one in src/models/flops.py")


def _seq(cells, shape: Shape) -> Tuple[int, Shape]:
    total = 0
    for c in cells:
        m, shape = _macs(c, shape)
        total += m
    return total, shape


@_rule(nn.SequentialCell)
def _sequential(cell: nn.SequentialCell, shape: Shape):
    return _seq(cell, shape)


@_rule(nn.Conv2d)
def _conv(cell: nn.Conv2d, shape: Shape):
    b, _, h, w = shape
    kh, kw = cell.kernel_size
    sh, sw = cell.stride[-2:] if len(cell.stride) > 2 else cell.stride
    dh, dw = cell.dilation[-2:] if len(cell.dilation) > 2 else cell.dilation
    if cell.pad_mode == "same":
        ho, wo = _ceil_div(h, sh), _ceil_div(w, sw)
    else:
        pad = cell.padding if isinstance(cell.padding, tuple) else (cell.padding,) * 4
        ph, pw = (pad[0] + pad[1], pad[2] + pad[3]) if cell.pad_mode == "pad" else (0, 0)
        ho = (h + ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + pw - dw * (kw - 1) - 1) // sw + 1
    macs = b * cell.out_channels * ho * wo * (cell.in_channels // cell.group) * kh * kw
    return macs, (b, cell.out_channels, ho, wo)


@_rule(nn.Dense)
def _dense(cell: nn.Dense, shape: Shape):
    rows = 1
    for s in shape[:-1]:
        rows *= s
    return rows * cell.in_channels * cell.out_channels, shape[:-1] + (cell.out_channels,)


@_rule(ACmix)
def _acmix(cell: ACmix, shape: Shape):
    b, cin, h, w = shape
    o, nh, hd, s = cell.out_planes, cell.head, cell.head_dim, cell.stride
    ho, wo = _ceil_div(h, s), _ceil_div(w, s)
    taps = cell.kernel_conv**2
    stage1 = 3 * b * cin * o * h * w  # conv1, conv2, conv3
    pe = _macs(cell.conv_p, (1, 2, h, w))[0]  # shared by the batch
    attention = 2 * b * o * cell.kernel_att**2 * ho * wo  # q.k over the window, weights times values
    fc = b * 3 * nh * taps * hd * h * w
    dep = b * o * taps * taps * ho * wo  # dep_conv: kc*kc kernel over kc*kc maps per group
    return stage1 + pe + attention + fc + dep, (b, o, ho, wo)


@_rule(Bottleneck)
def _bottleneck(cell: Bottleneck, shape: Shape):
    macs, out = _seq([cell.conv1, cell.conv2, cell.conv3], shape)
    if cell.has_downsample:
        macs += _macs(cell.downsample, shape)[0]
    return macs, out


@_rule(ACmixResNet)
def _resnet(cell: ACmixResNet, shape: Shape):
    macs, (b, c, h, w) = _macs(cell.conv1, shape)
    shape = (b, c, (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1)  # 3x3/2 max-pool, padding 1
    m, (b, c, _, _) = _seq([cell.layer1, cell.layer2, cell.layer3, cell.layer4], shape)
    m2, out = _macs(cell.fc, (b, c))
    return macs + m + m2, out


@_rule(WindowAttentionACmix)
def _window_attention(cell: WindowAttentionACmix, shape: Shape):
    b, h, w, c = shape
    nh, hd, ws = cell.num_heads, cell.head_dim, cell.window_size[0]
    tokens = b * h * w
    qkv = _macs(cell.qkv, shape)[0]
    attention = 2 * tokens * ws * ws * c  # per token: logits against ws*ws keys and the weighted sum, all heads
    proj = _macs(cell.proj, shape)[0]
    taps = cell.fc.out_channels  # kernel_conv**2 maps
    fc = tokens * 3 * nh * taps * hd
    dep = tokens * c * taps * taps
    return qkv + attention + proj + fc + dep, shape


@_rule(Mlp)
def _mlp(cell: Mlp, shape: Shape):
    return _seq([cell.fc1, cell.fc2], shape)


@_rule(SwinTransformerBlock)
def _swin_block(cell: SwinTransformerBlock, shape: Shape):
    b, length, c = shape
    h, w = cell.input_resolution
    macs = _macs(cell.attn, (b, h, w, c))[0] + _macs(cell.mlp, shape)[0]
    return macs, shape


@_rule(PatchMerging)
def _patch_merging(cell: PatchMerging, shape: Shape):
    b, length, c = shape
    return _macs(cell.reduction, (b, length // 4, 4 * c))


@_rule(BasicLayer)
def _basic_layer(cell: BasicLayer, shape: Shape):
    macs, shape = _seq(cell.blocks, shape)
    if cell.has_downsample:
        m, shape = _macs(cell.downsample, shape)
        macs += m
    return macs, shape


@_rule(PatchEmbed)
def _patch_embed(cell: PatchEmbed, shape: Shape):
    macs, (b, c, h, w) = _macs(cell.proj, shape)
    return macs, (b, h * w, c)


@_rule(SwinTransformerACmix)
def _swin(cell: SwinTransformerACmix, shape: Shape):
    macs, shape = _macs(cell.patch_embed, shape)
    m, (b, _, c) = _seq(cell.layers, shape)
    m2, out = _macs(cell.head, (b, c))
    return macs + m + m2, out


# --- PVT ---


def _pvt_attention(cell: GlobalAttentionACmix, b: int, n: int, h: int, w: int) -> int:
    c, nh, hd = cell.dim, cell.num_heads, cell.head_dim
    macs = _macs(cell.q, (b, n, c))[0] + _macs(cell.proj, (b, n, c))[0]
    nr = n  # with sr_ratio 1 the class token is a key too
    if cell.sr_ratio > 1:
        m, (_, _, hr, wr) = _macs(cell.sr, (b, c, h, w))
        macs, nr = macs + m, hr * wr
    macs += _macs(cell.kv, (b, nr, c))[0]
    macs += 2 * b * n * nr * c  # logits against every reduced key and the weighted sum, all heads
    taps = cell.fc.out_channels
    # convolution path on every token: the H x W map plus each class token as a 1x1 map (full kernels counted,
    # as for any zero-padded convolution); the nearest upsampling of k and v costs no multiply-adds
    macs += b * n * (3 * nh * taps * hd + c * taps * taps)  # fc, dep_conv
    return macs


@_rule(GlobalAttentionACmix)
def _global_attention(cell: GlobalAttentionACmix, shape: Shape):
    # shape (B, H, W, C): the H*W tokens of a map (the model's rule adds the class token)
    b, h, w, _ = shape
    return _pvt_attention(cell, b, h * w, h, w), shape


def _pvt_block(cell: PVTBlock, b: int, n: int, h: int, w: int) -> int:
    return _pvt_attention(cell.attn, b, n, h, w) + _macs(cell.mlp, (b, n, cell.attn.dim))[0]


@_rule(PVTBlock)
def _pvt_block_rule(cell: PVTBlock, shape: Shape):
    b, h, w, c = shape
    return _pvt_block(cell, b, h * w, h, w), (b, h * w, c)


@_rule(PyramidVisionTransformerACmix)
def _pvt_model(cell: PyramidVisionTransformerACmix, shape: Shape):
    macs = 0
    for i, (embed, _, blocks) in enumerate(cell.stages):
        m, (b, tokens, c) = _macs(embed, shape)
        h, w = cell.resolutions[i]
        tokens += 1 if i == cell.num_stages - 1 else 0  # the class token
        macs += m + sum(_pvt_block(blk, b, tokens, h, w) for blk in blocks)
        shape = (b, c, h, w)
    m, out = _macs(cell.head, (shape[0], shape[1]))
    return macs + m, out


# --- SAN ---


@_rule(PatchwiseAttentionACmix)
def _patchwise_attention(cell: PatchwiseAttentionACmix, shape: Shape):
    b, cin, h, w = shape
    rel, mid, cw, s = cell.rel_planes, cell.mid_planes, cell.weight_planes, cell.stride
    ho, wo = _ceil_div(h, s), _ceil_div(w, s)
    k2, taps = cell.kernel_att**2, cell.kernel_conv**2
    stage1 = b * cin * (2 * rel + mid) * h * w  # conv1, conv2, conv3
    weights = _macs(cell.conv_w, (b, rel * (k2 + 1), ho, wo))[0]  # conv_w on [x1, unfolded x2]
    aggregation = b * mid * k2 * ho * wo  # weights times the k*k neighbours of x3
    fc = b * cell.groups3 * taps * cw * h * w
    dep = b * mid * taps * taps * ho * wo  # dep_conv: kc*kc kernel over kc*kc maps per group
    return stage1 + weights + aggregation + fc + dep, (b, mid, ho, wo)


@_rule(SANBottleneck)
def _san_bottleneck(cell: SANBottleneck, shape: Shape):
    return _seq([cell.sam, cell.conv], shape)


@_rule(ACmixSAN)
def _san(cell: ACmixSAN, shape: Shape):
    macs, shape = _macs(cell.conv_in, shape)
    for i in range(5):
        b, c, h, w = shape
        m, shape = _seq([getattr(cell, f"conv{i}"), getattr(cell, f"layer{i}")], (b, c, h // 2, w // 2))  # 2x2/2 pool
        macs += m
    m, out = _macs(cell.fc, shape[:2])
    return macs + m, out


# --- channels-first adapters of create_acmix_attention ---


@_rule(WindowACmix2d)
def _window_2d(cell: WindowACmix2d, shape: Shape):
    b, c, h, w = shape
    return _macs(cell.attn, (b, h, w, c))[0], shape


@_rule(GlobalACmix2d)
def _global_2d(cell: GlobalACmix2d, shape: Shape):
    b, c, h, w = shape
    return _macs(cell.attn, (b, h, w, c))[0], shape
