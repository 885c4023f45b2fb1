"""ACmix-ResNet (Pan et al., "On the Integration of Self-Attention and Convolution", CVPR 2022, Table 1).

Source: LeapLabTHU/ACmix, ``ResNet/ResNet_ImageNet.py``.  A ResNet (v1.5: the stride sits in the 3x3
position) whose bottlenecks replace the 3x3 convolution by an :class:`~src.models.layers.ACmix` module with
sliding-window attention (k_att 7, 4 heads, k_conv 3).  Module and parameter names follow the official
code, so official checkpoints convert by renaming (:mod:`src.models.convert`).

Differences from the official code:

* The official weight initialisation (Kaiming normal, fan-out, on every ``Conv2d``) also overwrites
  ``dep_conv``'s weight (it has no bias), so the shift initialisation the paper describes is lost there.  By
  default (``dep_conv_init="shift"``) ``dep_conv`` keeps its shift kernels; ``dep_conv_init="official"``
  reproduces the released code.  Every other convolution gets the official Kaiming initialisation.
* Any input size works (the official model fails at sizes whose feature maps become odd before a stride-2
  stage, e.g. 200x200, or not larger than 3 pixels, e.g. 32x32, 56x56, 64x64); see
  :class:`~src.models.layers.ACmix`.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from mindspore import Tensor, nn, ops
from mindspore.common.initializer import HeNormal, initializer

from .layers import ACmix
from .layers.common import batch_norm
from .layers.group_conv import zero_pad
from .registry import ModelConfig, register_model

__all__ = ["Bottleneck", "ACmixResNet", "acmix_resnet26", "acmix_resnet38", "acmix_resnet50"]

DEP_CONV_INITS = ("shift", "official")


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias (the official helper of the same name).

    Args:
        in_planes: input channels.
        out_planes: output channels.
        stride: stride.
    """
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, pad_mode="valid", has_bias=False)


class Bottleneck(nn.Cell):
    """ResNet bottleneck with ACmix in place of the 3x3 convolution.

    Args:
        inplanes: input channels.
        planes: bottleneck width; the block outputs ``4 * planes`` channels.
        k_att: attention window of the ACmix module.
        head: attention heads.
        k_conv: kernel of the ACmix convolution path.
        stride: stride of the block (inside ACmix, on both of its paths).
        downsample: identity-branch cell (1x1 conv + BN) or None.
        groups: kept for the official signature; ACmix has no groups, must be 1.
        base_width: width scaling of the official signature (64 = none).
        dilation: dilation of the ACmix module.
        norm_layer: norm factory taking the channel count (default BatchNorm2d).
        **acmix_kwargs: extra keywords for :class:`ACmix` (``attn_impl``, ``block_size``).
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        k_att: int = 7,
        head: int = 4,
        k_conv: int = 3,
        stride: int = 1,
        downsample: Optional[nn.Cell] = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer=None,
        **acmix_kwargs,
    ) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError("Bottleneck: ACmix has no grouped variant, groups must be 1")
        norm_layer = norm_layer or batch_norm
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = ACmix(width, width, k_att, head, k_conv, stride=stride, dilation=dilation, **acmix_kwargs)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.has_downsample = downsample is not None

    def construct(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.has_downsample else x
        return self.relu(out + identity)


class ACmixResNet(nn.Cell):
    """ACmix-ResNet backbone with a linear classifier.

    ``forward_stages`` gives the outputs of ``layer1..layer4`` (strides 4, 8, 16, 32), described by
    ``feature_info``; ``forward_features`` the last of them; ``forward_head`` pools and classifies.

    Args:
        layers: number of bottlenecks per stage (4 stages).
        k_att: attention window of every ACmix module.
        head: attention heads.
        k_conv: kernel of the convolution paths.
        num_classes: classifier outputs; 0 builds no classifier (the model returns pooled features).
        in_chans: input image channels.
        zero_init_residual: zero-initialise the last BN of each block.
        dep_conv_init: ``"shift"`` (the paper's shift kernels in every ``dep_conv``) or ``"official"`` (the
            released code's Kaiming fan-out normal, which overwrites them).
        **acmix_kwargs: extra keywords for every :class:`ACmix` (``attn_impl``, ``block_size``).
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        k_att: int = 7,
        head: int = 4,
        k_conv: int = 3,
        num_classes: int = 1000,
        in_chans: int = 3,
        zero_init_residual: bool = False,
        dep_conv_init: str = "shift",
        **acmix_kwargs,
    ) -> None:
        super().__init__()
        layers = tuple(int(n) for n in layers)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"ACmixResNet: layers must be 4 positive stage depths, got {layers}")
        if num_classes < 0:
            raise ValueError(f"ACmixResNet: num_classes must be >= 0 (0: no classifier), got {num_classes}")
        if dep_conv_init not in DEP_CONV_INITS:
            raise ValueError(f"ACmixResNet: dep_conv_init must be one of {DEP_CONV_INITS}, got {dep_conv_init!r}")
        self.num_classes = num_classes
        self.inplanes = 64
        stem_stride, pool_stride = 2, 2
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=stem_stride, pad_mode="pad", padding=3, has_bias=False)
        self.bn1 = batch_norm(64)
        self.relu = nn.ReLU()
        # 3x3/2 max-pool with padding 1: its input is post-ReLU (>= 0), so zero padding equals the
        # official -inf padding; a "valid" MaxPool avoids the experimental MaxPool3DWithArgmax that
        # nn.MaxPool2d(pad_mode="pad") builds.
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=pool_stride, pad_mode="valid")
        block_kw = dict(k_att=k_att, head=head, k_conv=k_conv, **acmix_kwargs)
        self.feature_info: List[dict] = []
        reduction = stem_stride * pool_stride
        for i, (planes, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2)), 1):
            setattr(self, f"layer{i}", self._make_layer(planes, layers[i - 1], stride, block_kw))
            reduction *= stride
            self.feature_info.append({"num_chs": self.inplanes, "reduction": reduction, "module": f"layer{i}"})
        self.num_features = self.inplanes
        # timm's convention: without classes the head is an identity and the model returns pooled features
        self.fc = nn.Dense(self.num_features, num_classes) if num_classes else nn.Identity()
        self._init_weights(zero_init_residual, dep_conv_init)

    def _make_layer(self, planes: int, blocks: int, stride: int, block_kw: dict) -> nn.SequentialCell:
        downsample = None
        out_planes = planes * Bottleneck.expansion
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.SequentialCell([conv1x1(self.inplanes, out_planes, stride), batch_norm(out_planes)])
        cells = [Bottleneck(self.inplanes, planes, stride=stride, downsample=downsample, **block_kw)]
        self.inplanes = out_planes
        cells += [Bottleneck(self.inplanes, planes, **block_kw) for _ in range(1, blocks)]
        return nn.SequentialCell(cells)

    def _init_weights(self, zero_init_residual: bool, dep_conv_init: str) -> None:
        # Kaiming normal (fan-out) on every convolution, as the official code; its loop also hits dep_conv,
        # which "official" reproduces and "shift" avoids (dep_conv has no bias to touch either way).
        keep_shift = dep_conv_init == "shift"
        for name, cell in self.cells_and_names():
            if isinstance(cell, nn.Conv2d) and not (keep_shift and name.endswith("dep_conv")):
                w = cell.weight
                w.set_data(initializer(HeNormal(mode="fan_out", nonlinearity="relu"), w.shape, w.dtype))
            if zero_init_residual and isinstance(cell, Bottleneck):
                g = cell.bn3.gamma
                g.set_data(initializer("zeros", g.shape, g.dtype))

    def forward_stages(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Outputs of ``layer1..layer4``: channels-first maps at strides 4, 8, 16, 32 (rounded up).

        Args:
            x: images (B, C, H, W).
        """
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(zero_pad(zero_pad(x, 2, 1, 1), 3, 1, 1))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return c1, c2, c3, self.layer4(c3)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and the four stages: (B, 2048, H/32, W/32) (rounded up).

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


def _build(default_layers: Sequence[int], **kwargs) -> ACmixResNet:
    kwargs.setdefault("layers", default_layers)
    return ACmixResNet(**kwargs)


@register_model(
    ModelConfig(
        "sliding window",
        params_paper=10.6e6,
        flops_paper=2.3e9,
        top1=76.1,
        params_official=10_487_816,
        flops_official=2.22e9,
    )
)
def acmix_resnet26(**kwargs) -> ACmixResNet:
    """ACmix-ResNet-26: stage depths [1, 2, 4, 1].

    Args:
        **kwargs: ``num_classes`` and overrides of ``layers, k_att, head, k_conv, in_chans, dep_conv_init,
            attn_impl, block_size``.
    """
    return _build((1, 2, 4, 1), **kwargs)


@register_model(
    ModelConfig(
        "sliding window",
        params_paper=14.6e6,
        flops_paper=2.9e9,
        top1=77.4,
        params_official=14_410_896,
        flops_official=2.86e9,
    )
)
def acmix_resnet38(**kwargs) -> ACmixResNet:
    """ACmix-ResNet-38: stage depths [2, 3, 5, 2].

    Args:
        **kwargs: ``num_classes`` and overrides of ``layers, k_att, head, k_conv, in_chans, dep_conv_init,
            attn_impl, block_size``.
    """
    return _build((2, 3, 5, 2), **kwargs)


@register_model(
    ModelConfig(
        "sliding window",
        params_paper=18.6e6,
        flops_paper=3.6e9,
        top1=77.8,
        params_official=18_333_976,
        flops_official=3.50e9,
    )
)
def acmix_resnet50(**kwargs) -> ACmixResNet:
    """ACmix-ResNet-50: stage depths [3, 4, 6, 3].

    Args:
        **kwargs: ``num_classes`` and overrides of ``layers, k_att, head, k_conv, in_chans, dep_conv_init,
            attn_impl, block_size``.
    """
    return _build((3, 4, 6, 3), **kwargs)
