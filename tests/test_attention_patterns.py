"""The four ACmix attention patterns behind create_acmix_attention: one constructor, one call contract."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from src.models.flops import count_macs
from src.models.layers.attention import ACMIX_PATTERNS, create_acmix_attention

OPTIONS = {
    "sliding_window": {"kernel_att": 5},
    "window": {"window_size": 4},
    "global": {"sr_ratio": 2},
    "patchwise": {"kernel_att": 3, "share_planes": 4},
}


@pytest.mark.parametrize("pattern", ACMIX_PATTERNS)
def test_every_pattern_maps_nchw_to_nchw_and_trains(pattern, rng):
    cell = create_acmix_attention(pattern, 16, num_heads=2, **OPTIONS[pattern])
    names = {p.name.split(".")[-1] for p in cell.trainable_params()}
    assert {"rate1", "rate2"} <= names  # the mix of eq. 14
    assert any(p.name.endswith("dep_conv.weight") for p in cell.trainable_params())  # the shared conv path
    x = Tensor(rng.standard_normal((2, 16, 8, 8)).astype(np.float32))
    out = cell(x)
    assert out.shape == (2, 16, 8, 8)

    def loss(inp):
        return (cell(inp) ** 2).mean()

    grads = ms.jit(ms.value_and_grad(loss, None, cell.trainable_params()))(x)[1]
    assert all(np.isfinite(g.asnumpy()).all() for g in grads)
    assert count_macs(cell, (2, 16, 8, 8)) > 0


def test_window_adapter_is_the_swin_cell_on_channels_last(rng):
    cell = create_acmix_attention("window", 16, num_heads=2, window_size=4)
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    direct = cell.attn(Tensor(x.transpose(0, 2, 3, 1))).asnumpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(cell(Tensor(x)).asnumpy(), direct, atol=1e-6)


@pytest.mark.parametrize("pattern", ["sliding_window", "patchwise"])
def test_strided_patterns_change_width_and_size(pattern, rng):
    cell = create_acmix_attention(pattern, 16, out_dim=32, num_heads=2, stride=2, **OPTIONS[pattern])
    out = cell(Tensor(rng.standard_normal((1, 16, 9, 9)).astype(np.float32)))
    assert out.shape == (1, 32, 5, 5)


def test_bad_patterns_and_arguments_are_refused():
    with pytest.raises(ValueError, match="sliding_window, window, global, patchwise"):
        create_acmix_attention("local", 16)
    for pattern in ("window", "global"):
        with pytest.raises(ValueError, match="keeps the width"):
            create_acmix_attention(pattern, 16, stride=2)
