"""ACmix-Swin (Pan et al., "On the Integration of Self-Attention and Convolution", CVPR 2022).

Source: LeapLabTHU/ACmix, ``Swin-Transformer/models/swin_transformer_acmix.py``.  A Swin Transformer whose
window attention is :class:`WindowAttentionACmix`: the ``qkv`` projection feeds both the (shifted-)window
attention and the ACmix convolution path over the whole map.  Module and parameter names follow the official
code (``layers.i.blocks.j.attn.qkv`` ...), LayerNorms being MindSpore's (``gamma``/``beta``, renamed by
:mod:`src.models.convert`).

Notes on faithfulness:

* In a shifted block the whole attention cell, convolution path included, runs on the cyclically rolled
  map, as in the official code: the convolution's zero padding sits at the borders of the rolled map and
  its 3x3 kernels reach across the seam where the map's opposite borders meet.  Kept for parity.
* If a stage's resolution is not larger than the window, the window shrinks to the resolution and the
  shift becomes 0 (official rule).
* The model is built for one input size (``img_size``), because the attention masks depend on it; another
  size is a clear error.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import TruncatedNormal, initializer

from .layers.common import DropPath, Mlp, PatchEmbed, compact_transpose, init_dense_trunc_normal, layer_norm, roll2d
from .layers.window_attention import WindowAttentionACmix
from .registry import ModelConfig, register_model

__all__ = [
    "SwinTransformerBlock",
    "PatchMerging",
    "BasicLayer",
    "SwinTransformerACmix",
    "shifted_window_mask",
    "acmix_swin_tiny",
    "acmix_swin_small",
]


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> np.ndarray:
    """(num_windows, ws*ws, ws*ws) additive mask (0 / -100) of the shifted-window attention.

    Args:
        h: map height.
        w: map width.
        ws: window size.
        shift: shift size (> 0).
    """
    labels = np.zeros((h, w), np.float32)
    bands = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    cnt = 0
    for rs in bands:
        for cs in bands:
            labels[rs, cs] = cnt
            cnt += 1
    win = labels.reshape(h // ws, ws, w // ws, ws).transpose(0, 2, 1, 3).reshape(-1, ws * ws)
    diff = win[:, None, :] - win[:, :, None]
    return np.where(diff != 0, -100.0, 0.0).astype(np.float32)


class SwinTransformerBlock(nn.Cell):
    """Swin block: LN -> (shifted) window ACmix attention -> residual; LN -> MLP -> residual.

    Args:
        dim: channels.
        input_resolution: (H, W) of the token map.
        num_heads: attention heads.
        window_size: window size.
        shift_size: cyclic shift (0 or window_size // 2 in the model).
        mlp_ratio: MLP hidden width / dim.
        qkv_bias: bias of the qkv projection.
        qk_scale: override of the attention scale.
        drop: dropout rate.
        attn_drop: attention dropout rate.
        drop_path: stochastic depth rate.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: Sequence[int],
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale=None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = tuple(int(r) for r in input_resolution)
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        if min(self.input_resolution) <= self.window_size:
            self.shift_size = 0
            self.window_size = min(self.input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError(f"SwinTransformerBlock: shift_size must be in [0, window_size), got {shift_size}")
        h, w = self.input_resolution
        if h % self.window_size or w % self.window_size:
            raise ValueError(f"SwinTransformerBlock: resolution {h}x{w} is not a multiple of window {self.window_size}")
        self.norm1 = layer_norm(dim)
        self.attn = WindowAttentionACmix(
            dim, self.window_size, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop
        )
        # one cell per branch: a dropout cell called twice in a graph repeats its mask (MindSpore 2.8, fixed seed)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.attn_mask = (
            Tensor(shifted_window_mask(h, w, self.window_size, self.shift_size)) if self.shift_size > 0 else None
        )

    def construct(self, x: Tensor) -> Tensor:
        h, w = self.input_resolution
        b, length, c = x.shape
        if length != h * w:
            raise ValueError(f"SwinTransformerBlock: expected {h * w} tokens, got {length}")
        y = self.norm1(x).reshape(b, h, w, c)
        if self.shift_size > 0:
            y = roll2d(y, -self.shift_size)
            y = roll2d(self.attn(y, self.attn_mask), self.shift_size)
        else:
            y = self.attn(y, None)
        x = x + self.drop_path1(y.reshape(b, h * w, c))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class PatchMerging(nn.Cell):
    """2x2 neighbourhood concatenation (order (0,0), (1,0), (0,1), (1,1) as (row, col)) -> LN -> Linear(4C, 2C).

    Args:
        input_resolution: (H, W), both even.
        dim: channels C.
    """

    def __init__(self, input_resolution: Sequence[int], dim: int) -> None:
        super().__init__()
        self.input_resolution = tuple(int(r) for r in input_resolution)
        if self.input_resolution[0] % 2 or self.input_resolution[1] % 2:
            raise ValueError(f"PatchMerging: resolution {self.input_resolution} is not even")
        self.dim = dim
        self.reduction = nn.Dense(4 * dim, 2 * dim, has_bias=False)
        self.norm = layer_norm(4 * dim)

    def construct(self, x: Tensor) -> Tensor:
        h, w = self.input_resolution
        b, _, c = x.shape
        # (B, H/2, row phase, W/2, col phase, C) -> channels ordered col phase outer, row phase inner
        x = compact_transpose(x.reshape(b, h // 2, 2, w // 2, 2, c), (0, 1, 3, 4, 2, 5)).reshape(
            b, (h // 2) * (w // 2), 4 * c
        )
        return self.reduction(self.norm(x))


class BasicLayer(nn.Cell):
    """One Swin stage: blocks alternating shift 0 and window_size // 2, then an optional PatchMerging.

    Args:
        dim: channels.
        input_resolution: (H, W).
        depth: number of blocks.
        num_heads: attention heads.
        window_size: window size.
        mlp_ratio: MLP ratio.
        qkv_bias: bias of the qkv projections.
        qk_scale: override of the attention scale.
        drop: dropout rate.
        attn_drop: attention dropout rate.
        drop_path: per-block stochastic depth rates (list) or one rate.
        downsample: append a PatchMerging.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: Sequence[int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale=None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path=0.0,
        downsample: bool = False,
    ) -> None:
        super().__init__()
        rates = list(drop_path) if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        self.blocks = nn.CellList(
            [
                SwinTransformerBlock(
                    dim,
                    input_resolution,
                    num_heads,
                    window_size,
                    0 if i % 2 == 0 else window_size // 2,
                    mlp_ratio,
                    qkv_bias,
                    qk_scale,
                    drop,
                    attn_drop,
                    rates[i],
                )
                for i in range(depth)
            ]
        )
        self.dim = dim
        self.input_resolution = tuple(int(r) for r in input_resolution)
        self.has_downsample = downsample
        self.downsample = PatchMerging(input_resolution, dim) if downsample else None

    def forward_blocks(self, x: Tensor) -> Tensor:
        """The stage's blocks without the PatchMerging: (B, H*W, dim) -> (B, H*W, dim)."""
        for blk in self.blocks:
            x = blk(x)
        return x

    def construct(self, x: Tensor) -> Tensor:
        x = self.forward_blocks(x)
        if self.has_downsample:
            x = self.downsample(x)
        return x


class SwinTransformerACmix(nn.Cell):
    """ACmix-Swin classifier (no absolute position embedding, patch norm on, as the official configs).

    ``forward_features`` gives the normed tokens, ``forward_head`` pools and classifies them, ``forward_stages``
    gives each stage's map before its PatchMerging (channels first, strides ``patch_size * 2**i``), described by
    ``feature_info``.

    Args:
        img_size: input size (int).
        patch_size: patch size.
        in_chans: image channels.
        num_classes: classifier outputs; 0 builds no head (the model returns the pooled features).
        embed_dim: width of the first stage.
        depths: blocks per stage.
        num_heads: heads per stage.
        window_size: window size.
        mlp_ratio: MLP ratio.
        qkv_bias: bias of the qkv projections.
        qk_scale: override of the attention scale.
        drop_rate: dropout rate.
        attn_drop_rate: attention dropout rate.
        drop_path_rate: stochastic depth rate of the last block (linear from 0).
        ape: add a learned absolute position embedding to the patch tokens.
        patch_norm: LayerNorm after the patch embedding.
        use_checkpoint: recompute each block in the backward pass (``Cell.recompute``) to save memory.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale=None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        ape: bool = False,
        patch_norm: bool = True,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        depths, num_heads = tuple(int(d) for d in depths), tuple(int(n) for n in num_heads)
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f"SwinTransformerACmix: depths {depths} and num_heads {num_heads} must match in length")
        if num_classes < 0:
            raise ValueError(f"SwinTransformerACmix: num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.num_layers = len(depths)
        self.num_features = int(embed_dim * 2 ** (self.num_layers - 1))
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, norm=patch_norm)
        res: Tuple[int, int] = self.patch_embed.patches_resolution
        self.ape = ape
        self.absolute_pos_embed = (
            Parameter(
                initializer(TruncatedNormal(0.02), (1, self.patch_embed.num_patches, embed_dim)),
                name="absolute_pos_embed",
            )
            if ape
            else None
        )
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = [float(r) for r in np.linspace(0, drop_path_rate, sum(depths))]
        self.layers = nn.CellList(
            [
                BasicLayer(
                    int(embed_dim * 2**i),
                    (res[0] // 2**i, res[1] // 2**i),
                    depths[i],
                    num_heads[i],
                    window_size,
                    mlp_ratio,
                    qkv_bias,
                    qk_scale,
                    drop_rate,
                    attn_drop_rate,
                    dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                    downsample=i < self.num_layers - 1,
                )
                for i in range(self.num_layers)
            ]
        )
        self.stage_resolutions = tuple(layer.input_resolution for layer in self.layers)
        self.feature_info = [
            {"num_chs": layer.dim, "reduction": patch_size * 2**i, "module": f"layers.{i}"}
            for i, layer in enumerate(self.layers)
        ]
        self.norm = layer_norm(self.num_features)
        self.head = nn.Dense(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_dense_trunc_normal(self)  # the official initialisation
        if use_checkpoint:
            for layer in self.layers:
                for blk in layer.blocks:
                    blk.recompute()

    def _stage_tokens(self, x: Tensor) -> Tuple[Tensor, ...]:
        # each stage's tokens before its PatchMerging; the last stage has none, so its output feeds the norm
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        x = self.pos_drop(x)
        outs = ()
        for layer in self.layers:
            x = layer.forward_blocks(x)
            outs = outs + (x,)
            if layer.has_downsample:
                x = layer.downsample(x)
        return outs

    def forward_stages(self, x: Tensor) -> Tuple[Tensor, ...]:
        """One channels-first map (B, C_i, H_i, W_i) per stage, before its PatchMerging and without a norm.

        Args:
            x: images (B, in_chans, img_size, img_size).
        """
        tokens = self._stage_tokens(x)
        maps = ()
        for i in range(self.num_layers):
            h, w = self.stage_resolutions[i]
            t = tokens[i]
            maps = maps + (t.reshape(t.shape[0], h, w, t.shape[2]).transpose(0, 3, 1, 2),)
        return maps

    def forward_features(self, x: Tensor) -> Tensor:
        """Tokens of the last stage after the final norm, (B, L, num_features).

        Args:
            x: images (B, in_chans, img_size, img_size).
        """
        return self.norm(self._stage_tokens(x)[-1])

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Mean over the tokens, then the classifier unless ``pre_logits`` or ``num_classes == 0``.

        Args:
            x: tokens (B, L, num_features) from ``forward_features``.
            pre_logits: return the pooled features (B, num_features).
        """
        x = ops.mean(x, 1)
        return x if pre_logits else self.head(x)

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(
    ModelConfig(
        "shifted window",
        fixed_input_size=True,
        interpolation="bicubic",
        classifier="head",
        params_paper=30e6,
        flops_paper=4.6e9,
        top1=81.9,
        params_official=28_649_908,
        flops_official=4.65e9,
    )
)
def acmix_swin_tiny(**kwargs) -> SwinTransformerACmix:
    """ACmix-Swin-T: embed 96, depths [2, 2, 6, 2], heads [3, 6, 12, 24], window 7, drop path 0.2.

    Args:
        **kwargs: ``num_classes`` and overrides of the :class:`SwinTransformerACmix` keywords.
    """
    kwargs.setdefault("drop_path_rate", 0.2)
    return SwinTransformerACmix(**{"depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), **kwargs})


@register_model(
    ModelConfig(
        "shifted window",
        fixed_input_size=True,
        interpolation="bicubic",
        classifier="head",
        params_paper=51e6,
        flops_paper=9.0e9,
        top1=83.5,
        params_official=50_345_080,
        flops_official=9.00e9,
    )
)
def acmix_swin_small(**kwargs) -> SwinTransformerACmix:
    """ACmix-Swin-S: embed 96, depths [2, 2, 18, 2], heads [3, 6, 12, 24], window 7, drop path 0.3.

    Args:
        **kwargs: ``num_classes`` and overrides of the :class:`SwinTransformerACmix` keywords.
    """
    kwargs.setdefault("drop_path_rate", 0.3)
    return SwinTransformerACmix(**{"depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), **kwargs})
