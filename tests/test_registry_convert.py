"""Registry and official-checkpoint conversion."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from src.models import create_model, is_model, list_models
from src.models.acmix_resnet import ACmixResNet
from src.models.convert import convert_name, convert_state_dict, unwrap_checkpoint
from tests.conftest import load_fixture


def test_registry_lists_all_resnets():
    assert {"acmix_resnet26", "acmix_resnet38", "acmix_resnet50"} <= set(list_models())
    assert list_models() == sorted(list_models())
    assert is_model("acmix_resnet50") and not is_model("resnet50")


def test_unknown_model_suggests_close_names():
    with pytest.raises(KeyError, match="acmix_resnet50"):
        create_model("acmix_resnet_50")


def test_unknown_architecture_keyword_is_an_error():
    with pytest.raises(TypeError):
        create_model("acmix_resnet26", no_such_option=1)


def test_bn_renames_and_dropped_buffers():
    keys = {"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked", "fc.weight"}
    assert convert_name("bn1.weight", keys) == "bn1.gamma"
    assert convert_name("bn1.bias", keys) == "bn1.beta"
    assert convert_name("bn1.running_mean", keys) == "bn1.moving_mean"
    assert convert_name("bn1.running_var", keys) == "bn1.moving_variance"
    assert convert_name("bn1.num_batches_tracked", keys) is None
    assert convert_name("fc.weight", keys) == "fc.weight"


@pytest.mark.parametrize("prefix", ["", "module."])
def test_whole_resnet_state_dict_loads_strictly(prefix):
    cfg, params, _, _, _ = load_fixture("acmix_resnet_small")
    net = ACmixResNet(**cfg["init_kwargs"])
    converted = convert_state_dict({prefix + k: v for k, v in params.items()})
    assert ms.load_param_into_net(net, converted, strict_load=True) == ([], [])
    # nothing left over either: every converted tensor names a parameter of the net
    assert set(converted) == {p.name for p in net.get_parameters()}
    np.testing.assert_array_equal(
        net.layer1[0].conv2.dep_conv.weight.asnumpy(), params["layer1.0.conv2.dep_conv.weight"]
    )
    np.testing.assert_array_equal(net.bn1.moving_variance.asnumpy(), params["bn1.running_var"])


def test_unwrap_official_checkpoint_layouts():
    sd = {"fc.weight": np.zeros((2, 2), np.float32)}
    assert unwrap_checkpoint({"model": sd, "optimizer": {}, "epoch": 3}) is sd  # Swin training script
    assert unwrap_checkpoint({"state_dict": sd, "arch": "x", "best_acc1": 0.0}) is sd  # ResNet main.py
    assert unwrap_checkpoint(sd) is sd  # a bare state_dict
