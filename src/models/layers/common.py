"""Layers shared by the transformer-style backbones: MLP, drop path, patch embedding, layer norm, roll."""

from __future__ import annotations

from typing import Optional

from mindspore import Tensor, nn, ops

__all__ = ["DropPath", "Mlp", "PatchEmbed", "layer_norm", "roll2d"]


def layer_norm(dim: int, eps: float = 1e-5) -> nn.LayerNorm:
    """LayerNorm over the last axis with PyTorch's default epsilon (MindSpore's default is 1e-7).

    Args:
        dim: normalised size.
        eps: epsilon.
    """
    return nn.LayerNorm((dim,), epsilon=eps)


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
        self.act = nn.GELU(approximate=False)
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
