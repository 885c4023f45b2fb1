"""ACmix-PVT: PVT v1 whose attention is :class:`GlobalAttentionACmix` (ACmix paper section 4.5, eq. 19).

Source: the PVT v1 classifier (Wang et al., ICCV 2021; whai362/PVT, ``classification/pvt.py``), with its
stages, widths, heads, MLP and sr ratios, position embeddings, class token in the last stage, stochastic depth
0.1 and parameter names (``patch_embed1.proj``, ``pos_embed1``, ``block1.0.attn.q``, ``...attn.kv``,
``...attn.sr``, ``cls_token``, ``head``), so a PVT checkpoint initialises everything but the ACmix additions
(``fc``, ``dep_conv``, ``rate1/2``).  ``pos_embed=False`` is an option that leaves the position embeddings out.
There is no official ACmix-PVT.  Each block's attention keeps PVT's projections and attention and adds the
convolution path (see :mod:`src.models.layers.global_attention`).

Differences from PVT:

* A stage whose map is smaller than its sr ratio uses the map size (e.g. 4x4 with sr 8 reduces to one key),
  where PVT's reduction convolution would fail.
* The model is built for one input size (``img_size``); another size is a clear error, where PVT
  interpolates its position embeddings.
* Two DropPath cells per block instead of one called twice (MindSpore 2.8 repeats a dropout cell's mask).

docs/models.md gives the design, the parameter and FLOPs counts and the alternatives that were not built.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import TruncatedNormal, initializer

from .layers.common import DropPath, Mlp, PatchEmbed, init_dense_trunc_normal, layer_norm
from .layers.global_attention import GlobalAttentionACmix
from .registry import ModelConfig, register_model

__all__ = ["PVTBlock", "PyramidVisionTransformerACmix", "acmix_pvt_tiny", "acmix_pvt_small"]

_EPS = 1e-6  # PVT's blocks and final norm; its patch embeddings and sr norms keep 1e-5


class PVTBlock(nn.Cell):
    """PVT block: LN -> ACmix global attention -> residual; LN -> MLP -> residual.  Call as ``blk(x, H, W)``.

    Args:
        dim: channels.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / dim.
        qkv_bias: bias of the q and kv projections.
        qk_scale: override of the attention scale.
        drop: dropout rate.
        attn_drop: attention dropout rate.
        drop_path: stochastic depth rate.
        sr_ratio: spatial reduction of keys and values.
        kernel_conv: kernel size of the convolution path.
        group_conv_impl: grouped-convolution implementation of the convolution path.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_scale: Optional[float] = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        sr_ratio: int = 1,
        kernel_conv: int = 3,
        group_conv_impl: str = "auto",
    ) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim, _EPS)
        self.attn = GlobalAttentionACmix(
            dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, sr_ratio, kernel_conv, group_conv_impl
        )
        # one cell per branch: a dropout cell called twice in a graph repeats its mask (MindSpore 2.8, fixed seed)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = layer_norm(dim, _EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def construct(self, x: Tensor, h: int, w: int) -> Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), h, w))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


def _per_stage(name: str, values, n: int) -> tuple:
    values = tuple(values)
    if len(values) != n:
        raise ValueError(f"PyramidVisionTransformerACmix: {name} needs {n} entries (one per stage), got {values}")
    return values


class PyramidVisionTransformerACmix(nn.Cell):
    """ACmix-PVT classifier.  Built for one input size (its position embeddings and sr ratios depend on it).

    ``forward_features`` gives the normed tokens (class token first), ``forward_head`` classifies the class
    token, ``forward_stages`` gives each stage's map (channels first, the last without the class token),
    described by ``feature_info``.

    Args:
        img_size: input height and width.
        patch_size: patch size of the first stage (later stages: 2).
        in_chans: image channels.
        num_classes: classifier outputs; 0 builds no head (the model returns the class-token features).
        embed_dims: width per stage.
        num_heads: heads per stage.
        mlp_ratios: MLP ratio per stage.
        depths: blocks per stage.
        sr_ratios: spatial reduction per stage; a stage whose map is smaller uses its map size.
        qkv_bias: bias of the q and kv projections.
        qk_scale: override of the attention scale.
        drop_rate: dropout rate.
        attn_drop_rate: attention dropout rate.
        drop_path_rate: stochastic depth rate of the last block (linear from 0).
        kernel_conv: kernel size of the convolution path.
        group_conv_impl: grouped-convolution implementation of the convolution path.
        pos_embed: add PVT's learned absolute position embeddings to each stage's tokens (PVT has them;
            ``False`` leaves them out).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        depths: Sequence[int] = (2, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        kernel_conv: int = 3,
        group_conv_impl: str = "auto",
        pos_embed: bool = True,
    ) -> None:
        super().__init__()
        depths = tuple(int(d) for d in depths)
        n = len(depths)
        if n < 1:
            raise ValueError("PyramidVisionTransformerACmix: depths must name at least one stage")
        embed_dims = tuple(int(d) for d in _per_stage("embed_dims", embed_dims, n))
        num_heads = tuple(int(h) for h in _per_stage("num_heads", num_heads, n))
        mlp_ratios = tuple(float(r) for r in _per_stage("mlp_ratios", mlp_ratios, n))
        sr_ratios = tuple(int(r) for r in _per_stage("sr_ratios", sr_ratios, n))
        if num_classes < 0:
            raise ValueError(f"PyramidVisionTransformerACmix: num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.num_stages = n
        self.embed_dims = embed_dims
        self.use_pos_embed = pos_embed

        dpr = [float(r) for r in np.linspace(0, drop_path_rate, sum(depths))]
        res: Tuple[int, int] = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        resolutions, srs, stages, pos = [], [], [], []
        for i in range(n):
            cin = in_chans if i == 0 else embed_dims[i - 1]
            embed = PatchEmbed(res, patch_size if i == 0 else 2, cin, embed_dims[i])
            res = embed.patches_resolution
            # PVT's sr convolution needs a map at least sr_ratio wide: small inputs reduce to one key instead
            sr = max(1, min(sr_ratios[i], res[0], res[1]))
            blocks = nn.CellList(
                [
                    PVTBlock(
                        embed_dims[i],
                        num_heads[i],
                        mlp_ratios[i],
                        qkv_bias,
                        qk_scale,
                        drop_rate,
                        attn_drop_rate,
                        dpr[sum(depths[:i]) + j],
                        sr,
                        kernel_conv,
                        group_conv_impl,
                    )  # fmt: skip
                    for j in range(depths[i])
                ]
            )
            tokens = embed.num_patches + (1 if i == n - 1 else 0)  # the class token joins the last stage
            pe = None
            if pos_embed:
                pe = Parameter(initializer(TruncatedNormal(0.02), (1, tokens, embed_dims[i])), name=f"pos_embed{i + 1}")
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"pos_embed{i + 1}", pe)
            setattr(self, f"pos_drop{i + 1}", nn.Dropout(p=drop_rate))
            setattr(self, f"block{i + 1}", blocks)
            stages.append((embed, getattr(self, f"pos_drop{i + 1}"), blocks))
            pos.append(pe)
            resolutions.append(res)
            srs.append(sr)
        # (patch embed, dropout, blocks) per stage, for the unrolled loop; parameters stay named as in PVT
        self.stages = tuple(stages)
        self._pos_embeds = tuple(pos)
        self.resolutions = tuple(resolutions)
        self.sr_ratios = tuple(srs)
        first = patch_size if isinstance(patch_size, int) else patch_size[0]
        self.feature_info = [
            {"num_chs": embed_dims[i], "reduction": first * 2**i, "module": f"block{i + 1}"} for i in range(n)
        ]
        self.num_features = embed_dims[-1]  # width of the pooled features, as in the other families
        self.norm = layer_norm(self.num_features, _EPS)
        self.cls_token = Parameter(initializer(TruncatedNormal(0.02), (1, 1, self.num_features)), name="cls_token")
        self.head = nn.Dense(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_dense_trunc_normal(self)  # PVT v1's initialisation (the fan-out normal one is PVT v2's)

    def _stage_outputs(self, x: Tensor) -> Tuple[Tensor, ...]:
        # the maps (B, C, H, W) of all stages but the last, then the last stage's tokens (B, 1 + H*W, C)
        b = x.shape[0]
        last = self.num_stages - 1
        outs = ()
        for i in range(self.num_stages):
            embed, drop, blocks = self.stages[i]
            h, w = self.resolutions[i]
            x = embed(x)  # (B, H*W, C)
            c = x.shape[2]
            if i == last:
                x = ops.concat([ops.broadcast_to(self.cls_token.astype(x.dtype), (b, 1, c)), x], 1)
            if self.use_pos_embed:
                x = x + self._pos_embeds[i].astype(x.dtype)
            x = drop(x)
            for blk in blocks:
                x = blk(x, h, w)
            if i != last:
                x = x.reshape(b, h, w, c).transpose(0, 3, 1, 2)
            outs = outs + (x,)
        return outs

    def forward_stages(self, x: Tensor) -> Tuple[Tensor, ...]:
        """One channels-first map (B, C_i, H_i, W_i) per stage, the last without its class token and final norm.

        Args:
            x: images (B, in_chans, img_size, img_size).
        """
        outs = self._stage_outputs(x)
        t = outs[-1]
        b, n, c = t.shape
        h, w = self.resolutions[-1]
        tail = ops.slice(t, (0, 1, 0), (b, n - 1, c)).reshape(b, h, w, c).transpose(0, 3, 1, 2)
        return outs[:-1] + (tail,)

    def forward_features(self, x: Tensor) -> Tensor:
        """Tokens of the last stage after the final norm, class token first: (B, 1 + H*W, embed_dims[-1]).

        Args:
            x: images (B, in_chans, img_size, img_size).
        """
        return self.norm(self._stage_outputs(x)[-1])

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """The class token, then the classifier unless ``pre_logits`` or ``num_classes == 0``.

        Args:
            x: tokens (B, 1 + N, embed_dims[-1]) from ``forward_features``.
            pre_logits: return the class-token features (B, embed_dims[-1]).
        """
        b, _, c = x.shape
        x = ops.slice(x, (0, 0, 0), (b, 1, c)).reshape(b, c)
        return x if pre_logits else self.head(x)

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _pvt(depths: Sequence[int], kwargs: dict) -> PyramidVisionTransformerACmix:
    cfg = {
        "patch_size": 4,
        "embed_dims": (64, 128, 320, 512),
        "num_heads": (1, 2, 5, 8),
        "mlp_ratios": (8, 8, 4, 4),
        "sr_ratios": (8, 4, 2, 1),
        "qkv_bias": True,
        "depths": depths,
        "drop_path_rate": 0.1,
    }
    cfg.update(kwargs)
    return PyramidVisionTransformerACmix(**cfg)


@register_model(
    ModelConfig(
        "global (spatial reduction)",
        fixed_input_size=True,
        interpolation="bicubic",
        classifier="head",
        params_paper=13e6,
        flops_paper=2.0e9,
        top1=78.0,
    )
)
def acmix_pvt_tiny(**kwargs) -> PyramidVisionTransformerACmix:
    """ACmix-PVT-T: dims [64, 128, 320, 512], heads [1, 2, 5, 8], depths [2, 2, 2, 2], sr [8, 4, 2, 1],
    position embeddings, drop path 0.1 (PVT-Tiny's own setting).

    Args:
        **kwargs: ``num_classes`` and overrides of the :class:`PyramidVisionTransformerACmix` keywords.
    """
    return _pvt((2, 2, 2, 2), kwargs)


@register_model(
    ModelConfig(
        "global (spatial reduction)",
        fixed_input_size=True,
        interpolation="bicubic",
        classifier="head",
        params_paper=25e6,
        flops_paper=3.9e9,
        top1=81.7,
    )
)
def acmix_pvt_small(**kwargs) -> PyramidVisionTransformerACmix:
    """ACmix-PVT-S: dims [64, 128, 320, 512], heads [1, 2, 5, 8], depths [3, 4, 6, 3], sr [8, 4, 2, 1],
    position embeddings, drop path 0.1 (PVT-Small's own setting).

    Args:
        **kwargs: ``num_classes`` and overrides of the :class:`PyramidVisionTransformerACmix` keywords.
    """
    return _pvt((3, 4, 6, 3), kwargs)
