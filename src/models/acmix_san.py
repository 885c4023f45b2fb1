"""ACmix-SAN: SAN's patchwise self-attention network with the ACmix convolution path (paper section 4.5).

Source: SAN, "Exploring Self-attention for Image Recognition" (Zhao, Jia, Koltun, CVPR 2020; hszhao/SAN,
``model/san.py`` with ``sa_type=1``, patchwise), whose module and parameter names it keeps; there is no
official ACmix-SAN.  ACmix enters through each block's ``sam`` only, a
:class:`~src.models.layers.patchwise_attention.PatchwiseAttentionACmix` (SAN's patchwise SAM plus the
convolution path and the rates); everything else is the SAN host: stem ``conv_in`` + ``bn_in``, five stages
``relu(bn_i(layer_i(conv_i(maxpool(x)))))`` of widths 64 to 2048 and kernels [3, 7, 7, 7, 7], pre-activation
bottlenecks, global average pool and ``fc``.

Stage depths: SAN-10 [2, 1, 2, 4, 1], SAN-15 [3, 2, 3, 5, 2], SAN-19 [3, 3, 4, 6, 3].

Differences from SAN:

* Initialisation: SAN's code sets none, so PyTorch's defaults apply; they are set explicitly here (they are
  MindSpore 2.x's defaults too); ``dep_conv`` keeps its shift kernels and ``rate1/rate2`` start at 0.5.
* Any input size works (SAN's patchwise SAM fails on maps not larger than ``kernel // 2``, e.g. at stage 4
  for inputs below 128 px): reflection folds again at the borders.

docs/models.md gives the parameter and FLOPs counts against the paper's and the reasoning.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

from mindspore import Tensor, nn, ops
from mindspore.common.initializer import HeUniform, Uniform, initializer

from .layers.common import batch_norm
from .layers.patchwise_attention import PatchwiseAttentionACmix
from .registry import ModelConfig, register_model

__all__ = ["SANBottleneck", "ACmixSAN", "acmix_san10", "acmix_san15", "acmix_san19"]

STAGE_WIDTHS = (64, 256, 512, 1024, 2048)


def _conv1x1(in_planes: int, out_planes: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, pad_mode="valid", has_bias=bias)


class SANBottleneck(nn.Cell):
    """SAN's pre-activation bottleneck with the ACmix patchwise SAM.

    Args:
        in_planes: input channels.
        rel_planes: channels of the SAM's query/key features.
        mid_planes: channels of the SAM's values and output.
        out_planes: output channels (equal to ``in_planes``: the identity is added unprojected).
        share_planes: channels sharing one aggregation weight.
        kernel_size: patchwise attention window.
        stride: SAM stride; must be 1 (the identity path has no projection, as in SAN).
        kernel_conv: kernel of the ACmix convolution path.
        group_conv_impl: grouped-convolution implementation of the convolution path.
        agg_impl: aggregation implementation, ``"tap"`` or ``"unfold"`` (see :class:`PatchwiseAttentionACmix`).
    """

    def __init__(
        self,
        in_planes: int,
        rel_planes: int,
        mid_planes: int,
        out_planes: int,
        share_planes: int = 8,
        kernel_size: int = 7,
        stride: int = 1,
        kernel_conv: int = 3,
        group_conv_impl: str = "auto",
        agg_impl: str = "tap",
    ) -> None:
        super().__init__()
        if stride != 1 or in_planes != out_planes:
            raise ValueError("SANBottleneck: the identity shortcut needs stride 1 and in_planes == out_planes")
        self.bn1 = batch_norm(in_planes)
        self.sam = PatchwiseAttentionACmix(
            in_planes,
            rel_planes,
            mid_planes,
            share_planes,
            kernel_size,
            kernel_conv,
            stride,
            group_conv_impl=group_conv_impl,
            agg_impl=agg_impl,
        )
        self.bn2 = batch_norm(mid_planes)
        self.conv = _conv1x1(mid_planes, out_planes, bias=True)
        self.relu = nn.ReLU()

    def construct(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.sam(out)))
        return self.conv(out) + x


class ACmixSAN(nn.Cell):
    """ACmix-SAN backbone (patchwise attention) with a linear classifier.

    Of its five stages (strides 2 to 32), ``forward_stages`` gives stages 1 to 4 (strides 4, 8, 16, 32),
    described by ``feature_info``; ``forward_features`` the last; ``forward_head`` pools and classifies.

    Args:
        layers: blocks per stage (5 stages).
        kernels: patchwise attention window per stage (odd).
        num_classes: classifier outputs; 0 builds no classifier (the model returns pooled features).
        in_chans: input image channels.
        kernel_conv: kernel of the ACmix convolution paths.
        group_conv_impl: ``"auto"``, ``"conv"`` or ``"matmul"`` (see :class:`PatchwiseAttentionACmix`).
        agg_impl: ``"tap"`` (default) or ``"unfold"``: how every SAM aggregates (same result; see
            :class:`PatchwiseAttentionACmix` for their memory, speed and compile time).
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 3, 4, 6, 3),
        kernels: Sequence[int] = (3, 7, 7, 7, 7),
        num_classes: int = 1000,
        in_chans: int = 3,
        kernel_conv: int = 3,
        group_conv_impl: str = "auto",
        agg_impl: str = "tap",
    ) -> None:
        super().__init__()
        layers = tuple(int(n) for n in layers)
        kernels = tuple(int(k) for k in kernels)
        if len(layers) != 5 or min(layers) < 1:
            raise ValueError(f"ACmixSAN: layers must be 5 positive stage depths, got {layers}")
        if len(kernels) != 5:
            raise ValueError(f"ACmixSAN: kernels must give 5 window sizes, got {kernels}")
        if num_classes < 0:
            raise ValueError(f"ACmixSAN: num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.num_classes = num_classes
        c0 = STAGE_WIDTHS[0]
        self.conv_in, self.bn_in = _conv1x1(in_chans, c0), batch_norm(c0)
        block_kw = dict(kernel_conv=kernel_conv, group_conv_impl=group_conv_impl, agg_impl=agg_impl)
        in_planes = c0
        pool_stride = 2
        reduction = 1  # conv_in is a 1x1 convolution; each stage starts with the shared max-pool
        self.feature_info: List[dict] = []
        for i, (c, n, k) in enumerate(zip(STAGE_WIDTHS, layers, kernels)):
            # official names: conv0..conv4 / bn0..bn4 around layer0..layer4
            setattr(self, f"conv{i}", _conv1x1(in_planes, c))
            setattr(self, f"bn{i}", batch_norm(c))
            blocks = [SANBottleneck(c, c // 16, c // 4, c, 8, k, **block_kw) for _ in range(n)]
            setattr(self, f"layer{i}", nn.SequentialCell(blocks))
            in_planes = c
            reduction *= pool_stride
            if i:  # stage 0 (stride 2) is too early for a feature pyramid
                self.feature_info.append({"num_chs": c, "reduction": reduction, "module": f"layer{i}"})
        self.num_features = in_planes
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=pool_stride, pad_mode="valid")
        # timm's convention: without classes the head is an identity and the model returns pooled features
        self.fc = nn.Dense(self.num_features, num_classes) if num_classes else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # PyTorch's default initialisation, which SAN trains with (it sets none of its own);
        # dep_conv keeps its shift kernels.
        for name, cell in self.cells_and_names():
            if isinstance(cell, (nn.Conv2d, nn.Dense)) and not name.endswith("dep_conv"):
                w = cell.weight
                w.set_data(initializer(HeUniform(negative_slope=math.sqrt(5)), w.shape, w.dtype))
                if cell.bias is not None:
                    fan_in = math.prod(w.shape[1:])
                    b = cell.bias
                    b.set_data(initializer(Uniform(1.0 / math.sqrt(fan_in)), b.shape, b.dtype))

    def _stage(self, x: Tensor, conv: nn.Cell, layer: nn.Cell, bn: nn.Cell) -> Tensor:
        return self.relu(bn(layer(conv(self.pool(x)))))

    def forward_stages(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Outputs of stages 1 to 4 (``relu(bn_i(layer_i(...)))``): channels-first maps at strides 4, 8, 16, 32.

        Stage 0 (stride 2) runs but is not returned.  Each max-pool floors, so the maps are ``H // stride``.

        Args:
            x: images (B, C, H, W).
        """
        x = self.relu(self.bn_in(self.conv_in(x)))
        x = self._stage(x, self.conv0, self.layer0, self.bn0)
        s1 = self._stage(x, self.conv1, self.layer1, self.bn1)
        s2 = self._stage(s1, self.conv2, self.layer2, self.bn2)
        s3 = self._stage(s2, self.conv3, self.layer3, self.bn3)
        return s1, s2, s3, self._stage(s3, self.conv4, self.layer4, self.bn4)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and the five stages: (B, 2048, H/32, W/32) (each max-pool floors).

        Args:
            x: images (B, C, H, W).
        """
        return self.forward_stages(x)[3]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pool of ``forward_features``' map, then the classifier (none if ``pre_logits``).

        Args:
            x: last-stage map (B, C, h, w).
            pre_logits: return the pooled features (B, C).
        """
        x = ops.mean(x, (2, 3))
        return x if pre_logits else self.fc(x)

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _build(default_layers: Sequence[int], **kwargs) -> ACmixSAN:
    kwargs.setdefault("layers", default_layers)
    return ACmixSAN(**kwargs)


@register_model(ModelConfig("patchwise", params_paper=12.1e6, flops_paper=1.9e9, top1=77.6))
def acmix_san10(**kwargs) -> ACmixSAN:
    """ACmix-SAN-10 (patchwise): stage depths [2, 1, 2, 4, 1].

    Args:
        **kwargs: ``num_classes`` and ``layers, kernels, in_chans, kernel_conv, group_conv_impl, agg_impl``.
    """
    return _build((2, 1, 2, 4, 1), **kwargs)


@register_model(ModelConfig("patchwise", params_paper=16.6e6, flops_paper=2.7e9, top1=78.4))
def acmix_san15(**kwargs) -> ACmixSAN:
    """ACmix-SAN-15 (patchwise): stage depths [3, 2, 3, 5, 2].

    Args:
        **kwargs: ``num_classes`` and ``layers, kernels, in_chans, kernel_conv, group_conv_impl, agg_impl``.
    """
    return _build((3, 2, 3, 5, 2), **kwargs)


@register_model(ModelConfig("patchwise", params_paper=21.2e6, flops_paper=3.4e9, top1=78.7))
def acmix_san19(**kwargs) -> ACmixSAN:
    """ACmix-SAN-19 (patchwise): stage depths [3, 3, 4, 6, 3].

    Args:
        **kwargs: ``num_classes`` and ``layers, kernels, in_chans, kernel_conv, group_conv_impl, agg_impl``.
    """
    return _build((3, 3, 4, 6, 3), **kwargs)
