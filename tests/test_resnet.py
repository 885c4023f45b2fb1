"""ACmix-ResNet: parameter counts, parity with the official bottleneck and ResNet, training in graph mode,
the downstream views (``num_classes=0``, ``features_only``, ``pretrained``) and ``dep_conv_init``.

The view checks are written for any convolutional family; ``tests/test_san.py`` runs them on ACmix-SAN.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.errors import CheckpointError
from src.models import create_model, get_model_config
from src.models.acmix_resnet import ACmixResNet, Bottleneck, batch_norm, conv1x1
from src.models.convert import convert_state_dict
from src.models.flops import count_params
from src.models.layers import ACmix, shift_kernel
from tests.conftest import assert_parity, graph_train_step, load_fixture

# Counted by running the official PyTorch code, 1000 classes.
OFFICIAL_PARAMS = {
    name: get_model_config(name).params_official for name in ("acmix_resnet26", "acmix_resnet38", "acmix_resnet50")
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_count_equals_official(name):
    assert count_params(create_model(name)) == OFFICIAL_PARAMS[name]


def test_stage_depths():
    depths = {name: [len(getattr(create_model(name), f"layer{i}")) for i in range(1, 5)] for name in OFFICIAL_PARAMS}
    assert depths == {
        "acmix_resnet26": [1, 2, 4, 1],
        "acmix_resnet38": [2, 3, 5, 2],
        "acmix_resnet50": [3, 4, 6, 3],
    }


def test_architecture_overrides():
    net = create_model("acmix_resnet26", num_classes=7, layers=[1, 1, 1, 1], k_att=5, head=2, k_conv=5)
    assert net.fc.weight.shape == (7, 2048)
    acmix = net.layer2[0].conv2
    assert (acmix.kernel_att, acmix.head, acmix.kernel_conv, acmix.stride) == (5, 2, 5, 2)


def test_bottleneck_parity():
    cfg, params, x, y_ref, debug = load_fixture("acmix_bottleneck")
    kw = dict(cfg["init_kwargs"])
    ds = kw.pop("downsample")["Sequential"][0]["kwargs"]
    downsample = nn.SequentialCell(
        [conv1x1(ds["in_planes"], ds["out_planes"], ds["stride"]), batch_norm(ds["out_planes"])]
    )
    net = Bottleneck(**kw, downsample=downsample)
    assert ms.load_param_into_net(net, convert_state_dict(params), strict_load=True) == ([], [])
    net.set_train(False)
    assert_parity(net(Tensor(x)).asnumpy(), y_ref)


@pytest.mark.parametrize("conv_impl", ["conv", "matmul"])
def test_resnet_parity(conv_impl):
    cfg, params, x, y_ref, _ = load_fixture("acmix_resnet_small")
    net = ACmixResNet(**cfg["init_kwargs"], group_conv_impl=conv_impl)
    assert ms.load_param_into_net(net, convert_state_dict(params), strict_load=True) == ([], [])
    net.set_train(False)
    assert_parity(net(Tensor(x)).asnumpy(), y_ref)


def test_shift_initialisation_survives_backbone_init():
    net = create_model("acmix_resnet26", num_classes=10)
    modules = [c for _, c in net.cells_and_names() if isinstance(c, ACmix)]
    assert len(modules) == 8
    for m in modules:
        np.testing.assert_array_equal(m.dep_conv.weight.asnumpy(), shift_kernel(m.out_planes, m.kernel_conv))
    # and the other convolutions got the official Kaiming (fan-out) initialisation, not the default
    w = net.layer1[0].conv2.conv1.weight.asnumpy()
    assert abs(w.std() - np.sqrt(2.0 / w.shape[0])) < 0.2 * np.sqrt(2.0 / w.shape[0])


def test_dep_conv_init_official_overwrites_the_shift_kernels():
    """``dep_conv_init="official"``: the released code's Kaiming loop reaches dep_conv too (fan-out normal)."""
    net = create_model("acmix_resnet26", layers=(1, 1, 1, 1), dep_conv_init="official")
    for m in (c for _, c in net.cells_and_names() if isinstance(c, ACmix)):
        w = m.dep_conv.weight.asnumpy()  # (O, kc*kc, kc, kc): fan-out O * kc * kc, as torch counts it
        std = math.sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3]))
        assert not np.array_equal(w, shift_kernel(m.out_planes, m.kernel_conv))
        assert abs(w.std() / std - 1) < 0.1 and abs(w.mean()) < 0.1 * std
        assert m.dep_conv.bias is None  # the official module drops the bias, so there is nothing else to set
    with pytest.raises(ValueError, match="dep_conv_init must be one of .*shift.*official"):
        create_model("acmix_resnet26", layers=(1, 1, 1, 1), dep_conv_init="kaiming")


# one size per depth: the three differ only in how often the same blocks repeat, and both sizes (maps of 1 and
# 2 pixels in the last stage) are covered; a full-depth train-step compile costs a minute or more on 2 cores
@pytest.mark.parametrize("name, size", [("acmix_resnet26", 64), ("acmix_resnet38", 32), ("acmix_resnet50", 64)])
@pytest.mark.slow  # a full-depth model compiled in graph mode: minutes on 2 cores
def test_forward_backward_graph_mode(name, size):
    """Every ResNet trains a step in graph mode at small inputs (the official ResNet cannot run these)."""
    net = create_model(name, num_classes=10)
    x = Tensor(np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32))
    by_name = graph_train_step(net, x)
    for leaf in ("conv2.rate1", "conv2.rate2", "conv2.dep_conv.weight", "conv2.fc.weight"):
        assert np.abs(by_name[f"layer1.0.{leaf}"]).max() > 0, leaf


@pytest.mark.parametrize("size", [56, 200])
@pytest.mark.slow  # a full-depth model compiled in graph mode: minutes on 2 cores
def test_input_sizes_the_official_model_cannot_run(size):
    """56x56 (maps not larger than the window's reach) and 200x200 (odd maps before a stride-2 stage)."""
    net = create_model("acmix_resnet26", num_classes=10)
    net.set_train(False)
    x = Tensor(np.random.default_rng(size).standard_normal((1, 3, size, size)).astype(np.float32))
    feats = net.forward_features(x)
    assert feats.shape == (1, 2048, -(-size // 32), -(-size // 32))
    y = net(x).asnumpy()
    assert y.shape == (1, 10) and np.isfinite(y).all()


# ----------------------------------------------------------------------------------------------
# downstream views: num_classes=0, forward_head, features_only, pretrained (shared with tests/test_san.py)


def check_feature_info(name: str, channels) -> None:
    """A full-depth registered model (construction only) describes four stages at strides 4 to 32."""
    net = create_model(name)
    info = net.feature_info
    assert [f["num_chs"] for f in info] == list(channels)
    assert [f["reduction"] for f in info] == [4, 8, 16, 32]
    for f in info:  # each named stage exists and ends in num_chs channels
        last = [p for p in getattr(net, f["module"]).get_parameters() if p.ndim == 4][-1]
        assert last.shape[0] == f["num_chs"], f


def check_heads(name: str, **kw) -> None:
    """num_classes=0 builds no classifier; forward_head pools, then classifies unless pre_logits."""
    net = create_model(name, num_classes=5, **kw)
    headless = create_model(name, num_classes=0, **kw)
    assert not [p.name for p in headless.get_parameters() if p.name.startswith("fc.")]
    assert {p.name for p in net.get_parameters()} - {p.name for p in headless.get_parameters()} == {
        "fc.weight",
        "fc.bias",
    }
    feats = np.random.default_rng(3).standard_normal((2, net.num_features, 3, 2)).astype(np.float32)
    pooled = feats.mean((2, 3))
    w, b = net.fc.weight.asnumpy(), net.fc.bias.asnumpy()
    np.testing.assert_allclose(net.forward_head(Tensor(feats), pre_logits=True).asnumpy(), pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.forward_head(Tensor(feats)).asnumpy(), pooled @ w.T + b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(headless.forward_head(Tensor(feats)).asnumpy(), pooled, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        create_model(name, num_classes=-1, **kw)
    for bad in ((), (0, 4), (-1,)):
        with pytest.raises(ValueError, match="out_indices"):
            create_model(name, features_only=True, out_indices=bad, **kw)


def check_pretrained(name: str, tmp_path, other: dict, **kw) -> None:
    """pretrained=PATH loads every weight; without a head the classifier entries are skipped; another
    architecture (``other``: overrides of ``kw``) or another class count is a CheckpointError."""
    net = create_model(name, num_classes=5, **kw)
    path = str(tmp_path / "net.ckpt")
    ms.save_checkpoint(net, path)
    saved = {k: v.asnumpy() for k, v in net.parameters_dict().items()}
    for views in ({"num_classes": 5}, {"num_classes": 0}, {"features_only": True}):
        loaded = create_model(name, pretrained=path, **views, **kw)
        got = {k: v.asnumpy() for k, v in loaded.parameters_dict().items()}
        assert set(got) == (set(saved) if views.get("num_classes") else set(saved) - {"fc.weight", "fc.bias"})
        for k, v in got.items():
            np.testing.assert_array_equal(v, saved[k], err_msg=k)
    with pytest.raises(CheckpointError, match="does not fit"):
        create_model(name, pretrained=path, **{**kw, **other})
    with pytest.raises(CheckpointError, match="wrong shape: fc"):
        create_model(name, pretrained=path, num_classes=7, **kw)


def check_feature_gradients(name: str, size: int, zero_ok: Optional[Callable[[str], bool]] = None, **kw) -> None:
    """A loss on the features_only maps reaches every backbone parameter (graph mode, train mode)."""
    feats = create_model(name, features_only=True, **kw)
    feats.set_train(True)
    params = feats.trainable_params()
    rng = np.random.default_rng(size)
    x = Tensor(rng.standard_normal((2, 3, size, size)).astype(np.float32))
    weights = [Tensor(rng.standard_normal(m.shape).astype(np.float32)) for m in feats(x)]

    def loss(inp):
        return sum((m * r).sum() for m, r in zip(feats(inp), weights))

    value, grads = ms.jit(ms.value_and_grad(loss, None, params))(x)
    assert np.isfinite(value.asnumpy())
    dead = [p.name for p, g in zip(params, grads) if not np.abs(g.asnumpy()).max() > 0]
    assert [n for n in dead if not (zero_ok and zero_ok(n))] == [], dead


def test_feature_info_of_registered_models():
    for name in sorted(OFFICIAL_PARAMS):
        check_feature_info(name, [256, 512, 1024, 2048])


def test_heads_and_bad_out_indices():
    check_heads("acmix_resnet26", layers=(1, 1, 1, 1))


def test_pretrained_views(tmp_path):
    check_pretrained("acmix_resnet26", tmp_path, {"layers": (1, 1, 2, 1)}, layers=(1, 1, 1, 1))


@pytest.mark.slow  # compiles a reduced-depth backbone's backward
def test_feature_gradients_in_graph_mode():
    check_feature_gradients("acmix_resnet26", 64, layers=(1, 1, 1, 1))
