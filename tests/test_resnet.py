"""ACmix-ResNet: parameter counts, parity with the official bottleneck and ResNet, training in graph mode."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

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


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
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
