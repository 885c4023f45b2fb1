"""The MAC counter: hand-computed cases per layer type, and the official figures for whole models."""

from __future__ import annotations

import pytest
from mindspore import nn

from src.models import create_model, list_models
from src.models.flops import count_macs, count_params
from src.models.layers import ACmix
from src.models.layers.window_attention import WindowAttentionACmix


def test_conv_and_dense():
    conv = nn.Conv2d(3, 8, 3, stride=2, pad_mode="pad", padding=1)
    assert count_macs(conv, (1, 3, 9, 9)) == 8 * 5 * 5 * 3 * 9  # 5x5 outputs, 27 MACs each, 8 channels
    assert count_macs(nn.Conv2d(4, 8, 3, pad_mode="same", group=2), (2, 4, 5, 5)) == 2 * 8 * 25 * 2 * 9
    assert count_macs(nn.Dense(10, 4), (2, 5, 10)) == 2 * 5 * 10 * 4


def test_acmix_module_by_hand():
    # 8 -> 8 channels, 2 heads (head_dim 4), 6x6 input, stride 2 (3x3 output), k_att 3, k_conv 3
    stage1 = 3 * 8 * 8 * 36
    pe = 2 * 4 * 36
    attention = 2 * 8 * 9 * 9  # 8 channels x 9 outputs x 9 neighbours, logits and weighted sum
    fc = 6 * 9 * 4 * 36  # 3*heads groups -> 9 maps, for each of head_dim channels and 36 pixels
    dep = 8 * 9 * 9 * 9  # 8 outputs x 9 pixels x (9 maps x 3x3 kernel)
    net = ACmix(8, 8, kernel_att=3, head=2, kernel_conv=3, stride=2)
    assert count_macs(net, (1, 8, 6, 6)) == stage1 + pe + attention + fc + dep
    assert count_macs(net, (3, 8, 6, 6)) == 3 * (stage1 + attention + fc + dep) + pe  # pe is shared by the batch


def test_window_attention_by_hand():
    tokens, c = 16, 8  # 4x4 map, 2x2 windows, 2 heads of 4
    qkv, proj = tokens * c * 3 * c, tokens * c * c
    attention = 2 * tokens * 4 * c
    fc, dep = tokens * 6 * 9 * 4, tokens * c * 81
    assert count_macs(WindowAttentionACmix(8, 2, 2), (1, 4, 4, 8)) == qkv + attention + proj + fc + dep


# Official code's figures: ResNet counted with the same convention, Swin by its flops().
OFFICIAL_GMACS = {
    "acmix_resnet26": 2.22,
    "acmix_resnet38": 2.86,
    "acmix_resnet50": 3.50,
    "acmix_swin_tiny": 4.65,
    "acmix_swin_small": 9.00,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_GMACS))
@pytest.mark.slow  # full-size models built and counted: about a minute on 2 cores
def test_whole_models_match_the_official_figures(name):
    macs = count_macs(create_model(name), (1, 3, 224, 224)) / 1e9
    # the official Swin flops() also counts LayerNorms (about 0.1%); the ResNet figures match to the digit
    tol = 0.005 if "resnet" in name else 0.01
    assert abs(macs - OFFICIAL_GMACS[name]) <= tol, macs


@pytest.mark.slow  # full-size models built and counted: about a minute on 2 cores
def test_every_registered_model_is_counted():
    for name in list_models():
        net = create_model(name, num_classes=10)
        assert count_macs(net, (1, 3, 224, 224)) > 0 and count_params(net) > 0


def test_unknown_cell_is_an_error():
    class Strange(nn.Cell):
        def construct(self, x):
            return x

    with pytest.raises(NotImplementedError, match="Strange"):
        count_macs(Strange(), (1, 3, 8, 8))
