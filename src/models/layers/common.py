"""Layers and initialisers shared by the backbones: norms, Linear init, MLP, drop path, patch embedding, roll."""

from __future__ import annotations

from typing import Optional

from mindspore import Tensor, nn, ops
from mindspore.common.initializer import TruncatedNormal, initializer

__all__ = [
    "DropPath",
    "ErfGELU",
    "Mlp",
    "PatchEmbed",
    "batch_norm",
    "compact_transpose",
    "init_dense_trunc_normal",
    "layer_norm",
    "roll2d",
]

_INV_SQRT2 = 0.7071067811865476


def layer_norm(dim: int, eps: float = 1e-5) -> nn.LayerNorm:
    """LayerNorm over the last axis with PyTorch's default epsilon (MindSpore's default is 1e-7).

    Args:
        dim: normalised size.
        eps: epsilon.
    """
    return nn.LayerNorm((dim,), epsilon=eps)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with PyTorch's defaults, which ResNet and SAN train with: eps 1e-5, running-average momentum 0.1.

    MindSpore's ``momentum`` weighs the old running value, so PyTorch's 0.1 is 0.9 here.

    Args:
        channels: number of channels.
    """
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


def init_dense_trunc_normal(net: nn.Cell, std: float = 0.02) -> None:
    """Swin's and PVT v1's initialisation: truncated normal weights and zero biases on every Linear of ``net``.

    Other cells keep their own initialisation: LayerNorms 1/0, convolutions the framework default (the same
    rule in PyTorch and MindSpore) and ``dep_conv`` its shift kernels.

    Args:
        net: the model, initialised in place.
        std: standard deviation of the truncated normal.
    """
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.Dense):
            cell.weight.set_data(initializer(TruncatedNormal(std), cell.weight.shape, cell.weight.dtype))
            if cell.bias is not None:
                cell.bias.set_data(initializer("zeros", cell.bias.shape, cell.bias.dtype))


def roll2d(x: Tensor, shift: int, axes: tuple = (1, 2)) -> Tensor:
    """``torch.roll(x, (shift, shift), axes)`` from Slice and Concat (documented on Ascend, GPU and CPU).

    Args:
        x: input.
        shift: positive rolls towards higher indices, negative towards lower ones.
        axes: the two axes to roll.
    """
    for axis in axes:
        n = x.shape[axis]
        s = shift % n
        if s == 0:
            continue
        begin = [0] * x.ndim
        size = list(x.shape)
        size[axis] = n - s
        head = ops.slice(x, tuple(begin), tuple(size))
        begin[axis] = n - s
        size[axis] = s
        tail = ops.slice(x, tuple(begin), tuple(size))
        x = ops.concat([tail, head], axis)
    return x


def _transpose_plan(shape: tuple, perm: tuple) -> tuple:
    """(input shape, permutation) of the smallest transpose equal to ``transpose(x, perm)`` for ``x.shape == shape``.

    Size-1 axes are dropped and axes that stay next to each other are merged; ``((), ())`` means no data moves.
    """
    kept = tuple(a for a in range(len(shape)) if shape[a] != 1)
    order = tuple(kept.index(a) for a in perm if shape[a] != 1)  # the permutation over the kept axes
    groups = ()  # runs of kept axes, in output order, that stay adjacent
    for i in order:
        if groups and groups[-1][-1] + 1 == i:
            groups = groups[:-1] + (groups[-1] + (i,),)
        else:
            groups = groups + ((i,),)
    if len(groups) <= 1:
        return (), ()
    firsts = tuple(sorted(grp[0] for grp in groups))
    sizes = ()
    for f in firsts:
        grp = groups[tuple(gr[0] for gr in groups).index(f)]
        size = 1
        for i in grp:
            size = size * shape[kept[i]]
        sizes = sizes + (size,)
    return sizes, tuple(firsts.index(grp[0]) for grp in groups)


def compact_transpose(x: Tensor, perm: tuple) -> Tensor:
    """``x.transpose(perm)``; when ``x`` has size-1 axes, as the smallest equivalent transpose between reshapes.

    Tiled and windowed attention permute 5- to 7-D views that have size-1 axes when a map holds one tile or
    one window.  MindSpore 2.8's graph-kernel compiler (AKG) on CPU segfaults compiling a fused
    Reshape+Transpose of such a 7-D view (e.g. (2, 64, 4, 1, 13, 1, 13) by (0, 2, 3, 5, 4, 6, 1)), and
    MindSpore then waits for the lost kernel for ever; dropping the size-1 axes and merging neighbours that move
    together avoids it.  Views without size-1 axes are transposed as they are: reshaping them too keeps the
    fusion from absorbing the transpose (ACmix-Swin-T forward, batch 8: 1,252 MiB peak against 594 MiB).

    Args:
        x: input of static shape.
        perm: the permutation, as for ``Tensor.transpose``.
    """
    shape = x.shape
    if 1 not in shape:
        return ops.transpose(x, tuple(perm))  # left whole: graph-kernel fusion keeps it in the neighbouring kernels
    out_shape = tuple(shape[a] for a in perm)
    sizes, small_perm = _transpose_plan(shape, tuple(perm))
    if not small_perm:
        return x.reshape(out_shape)
    return ops.transpose(x.reshape(sizes), small_perm).reshape(out_shape)


class DropPath(nn.Cell):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``drop_prob``.

    Args:
        drop_prob: probability of dropping a sample's branch (0 disables the cell).
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"DropPath: drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob
        self.dropout = nn.Dropout(p=drop_prob)

    def construct(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        mask = self.dropout(ops.ones((x.shape[0],) + (1,) * (x.ndim - 1), x.dtype))  # 0 or 1/keep
        return x * mask


class ErfGELU(nn.Cell):
    """Exact GELU, ``0.5 * x * (1 + erf(x / sqrt(2)))``, written out from Erf, Mul and Add.

    The same function as ``nn.GELU(approximate=False)`` (PyTorch's default), but cheaper on MindSpore 2.8's CPU
    backend: there the fused exact-GELU kernel keeps about four times its output per call (24 calls on a 9.2 MiB
    tensor held 948 MiB, against about 60 MiB written out), which made the GELU the largest single user of
    memory in the Swin and PVT forward passes.  The gradient comes from automatic differentiation.
    """

    def construct(self, x: Tensor) -> Tensor:
        return 0.5 * x * (1.0 + ops.erf(x * _INV_SQRT2))


class Mlp(nn.Cell):
    """Transformer MLP: Linear -> GELU (exact, erf) -> Dropout -> Linear -> Dropout.

    Args:
        in_features: input width.
        hidden_features: hidden width (default: in_features).
        out_features: output width (default: in_features).
        drop: dropout rate.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: Optional[int] = None,
        out_features: Optional[int] = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Dense(in_features, hidden_features)
        self.act = ErfGELU()
        self.fc2 = nn.Dense(hidden_features, out_features)
        # two cells: one dropout cell called twice in a graph draws the same mask twice (MindSpore 2.8, fixed seed)
        self.drop1 = nn.Dropout(p=drop)
        self.drop2 = nn.Dropout(p=drop)

    def construct(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class PatchEmbed(nn.Cell):
    """Image to patch tokens: a patch_size-strided convolution, row-major tokens, optional LayerNorm.

    Args:
        img_size: input height and width (int or pair).
        patch_size: patch height and width (int or pair).
        in_chans: image channels.
        embed_dim: token width.
        norm: apply a LayerNorm to the tokens.
    """

    def __init__(self, img_size=224, patch_size=4, in_chans: int = 3, embed_dim: int = 96, norm: bool = True) -> None:
        super().__init__()
        img_size = _pair(img_size)
        patch_size = _pair(patch_size)
        if img_size[0] % patch_size[0] or img_size[1] % patch_size[1]:
            raise ValueError(f"PatchEmbed: img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.patches_resolution = (img_size[0] // patch_size[0], img_size[1] // patch_size[1])
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, pad_mode="valid", has_bias=True)
        self.has_norm = norm
        self.norm = layer_norm(embed_dim) if norm else None

    def construct(self, x: Tensor) -> Tensor:
        if x.shape[2] != self.img_size[0] or x.shape[3] != self.img_size[1]:
            raise ValueError(f"PatchEmbed: the model was built for {self.img_size} inputs, got {x.shape[2:]}")
        x = self.proj(x)
        b, c = x.shape[0], x.shape[1]
        x = x.reshape(b, c, -1).transpose(0, 2, 1)
        if self.has_norm:
            x = self.norm(x)
        return x


def _pair(v) -> tuple:
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)
