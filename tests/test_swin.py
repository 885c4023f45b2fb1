"""ACmix-Swin: parity with the official window attention, shifted block and model; parameter counts; training."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, ops

from src.models import create_model, get_model_config
from src.models.acmix_swin import SwinTransformerACmix, SwinTransformerBlock, shifted_window_mask
from src.models.convert import convert_state_dict
from src.models.flops import count_params
from src.models.layers import shift_kernel
from src.models.layers.common import DropPath
from src.models.layers.window_attention import WindowAttentionACmix, relative_position_index
from src.models.registry import FeatureExtractor
from tests.conftest import assert_parity, graph_train_step, load_fixture

# Counted by running the official PyTorch code, 1000 classes.
OFFICIAL_PARAMS = {name: get_model_config(name).params_official for name in ("acmix_swin_tiny", "acmix_swin_small")}


@pytest.mark.parametrize(
    "fixture,cls,extra",
    [
        ("swin_window_attention", WindowAttentionACmix, {}),
        ("swin_window_attention", WindowAttentionACmix, {"group_conv_impl": "matmul"}),
        ("swin_block_shifted", SwinTransformerBlock, {}),
        ("acmix_swin_tiny_small", SwinTransformerACmix, {}),
    ],
)
def test_parity_with_official(fixture, cls, extra):
    cfg, params, x, y_ref, _ = load_fixture(fixture)
    net = cls(**cfg["init_kwargs"], **extra)
    assert ms.load_param_into_net(net, convert_state_dict(params), strict_load=True) == ([], [])
    net.set_train(False)
    assert_parity(net(Tensor(x)).asnumpy(), y_ref)


def test_buffers_match_the_official_ones():
    _, params, _, _, _ = load_fixture("swin_block_shifted")
    np.testing.assert_array_equal(params["attn.relative_position_index"], relative_position_index((4, 4)))
    np.testing.assert_array_equal(params["attn_mask"], shifted_window_mask(8, 8, 4, 2))


def test_converter_refuses_a_foreign_relative_position_index():
    _, params, _, _, _ = load_fixture("swin_window_attention")
    params = dict(params)
    params["relative_position_index"] = params["relative_position_index"][::-1].copy()
    with pytest.raises(ValueError, match="relative position index"):
        convert_state_dict(params)


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_count_equals_official(name):
    net = create_model(name)
    assert count_params(net) == OFFICIAL_PARAMS[name]
    # the published stage widths and strides, read from the built model
    assert [(f["num_chs"], f["reduction"], f["module"]) for f in net.feature_info] == [
        (96, 4, "layers.0"), (192, 8, "layers.1"), (384, 16, "layers.2"), (768, 32, "layers.3"),
    ]  # fmt: skip


def test_architecture_overrides_and_small_map_rule():
    net = create_model(
        "acmix_swin_tiny", img_size=64, patch_size=4, num_classes=5, embed_dim=32, depths=[2, 2, 2, 2],
        num_heads=[1, 2, 4, 8], window_size=4, mlp_ratio=2.0, drop_path_rate=0.1,
    )  # fmt: skip
    assert net.head.weight.shape == (5, 256)
    blocks = [blk for layer in net.layers for blk in layer.blocks]
    # 16x16 and 8x8 maps: window 4, shift alternating 0/2; 4x4 and 2x2 maps: window = map, no shift
    assert [(b.window_size, b.shift_size) for b in blocks] == [(4, 0), (4, 2)] * 2 + [(4, 0), (4, 0), (2, 0), (2, 0)]
    np.testing.assert_array_equal(blocks[0].attn.dep_conv.weight.asnumpy(), shift_kernel(32, 3))


def test_wrong_input_size_is_a_clear_error():
    net = create_model("acmix_swin_tiny", img_size=32, patch_size=2, window_size=4, depths=[1, 1], num_heads=[1, 2])
    with pytest.raises(ValueError, match="built for"):
        net(Tensor(np.zeros((1, 3, 64, 64), np.float32)))


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
@pytest.mark.slow  # a full-depth model compiled in graph mode: minutes on 2 cores
def test_forward_backward_graph_mode(name):
    """The full-depth architecture at a small input (64x64, window 4) trains a step in graph mode."""
    net = create_model(name, num_classes=10, img_size=64, window_size=4)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32))
    by_name = graph_train_step(net, x)
    for leaf in ("rate1", "rate2", "dep_conv.weight", "fc.weight", "fc.bias", "relative_position_bias_table"):
        assert np.abs(by_name[f"layers.0.blocks.1.attn.{leaf}"]).max() > 0, leaf


def test_drop_path_cells_draw_independent_masks():
    """Two DropPath cells in one graph draw different per-sample masks (a block has one per branch)."""
    ms.set_seed(0)
    cells = [DropPath(0.5), DropPath(0.5)]
    for c in cells:
        c.set_train(True)

    def masks(x):
        return cells[0](x), cells[1](x)

    a, b = ms.jit(masks)(Tensor(np.ones((64, 1, 1), np.float32)))
    a, b = a.asnumpy().ravel(), b.asnumpy().ravel()
    assert set(np.unique(a)) <= {0.0, 2.0} and set(np.unique(b)) <= {0.0, 2.0}
    assert 0 < (a == 0).sum() < 64 and not np.array_equal(a, b)


# four stages of a 64x64 input: maps 16, 8, 4 (window 4), 2 (window = map); one block each to compile fast
SMALL = dict(img_size=64, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=4, mlp_ratio=2.0)


@pytest.fixture(scope="module")
def downstream():
    """One graph-mode forward of the downstream views of one small backbone (num_classes=0), shared by the tests
    below: the features_only maps, an out_indices subset, the model's output, forward_features and
    forward_head(pre_logits=True)."""
    sub = create_model("acmix_swin_tiny", features_only=True, out_indices=(3, 1), **SMALL)
    net = sub.backbone
    fe = FeatureExtractor(net)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32))

    def views(inp):
        feats = net.forward_features(inp)
        return fe(inp), sub(inp), net(inp), feats, net.forward_head(feats, True)

    net.set_train(False)
    outs = ms.jit(views)(x)
    maps, picked, y, feats, pre = [tuple(t.asnumpy() for t in o) if isinstance(o, tuple) else o.asnumpy() for o in outs]
    return fe, sub, {"maps": maps, "picked": picked, "y": y, "feats": feats, "pre": pre}


def test_features_only_maps_match_feature_info(downstream):
    fe, _, out = downstream
    assert [f["reduction"] for f in fe.feature_info] == [4, 8, 16, 32]
    expected = [(2, f["num_chs"], 64 // f["reduction"], 64 // f["reduction"]) for f in fe.feature_info]
    assert [m.shape for m in out["maps"]] == expected


def test_out_indices_subset(downstream):
    _, sub, out = downstream
    assert sub.feature_info == [sub.backbone.feature_info[3], sub.backbone.feature_info[1]]
    np.testing.assert_array_equal(out["picked"][0], out["maps"][3])
    np.testing.assert_array_equal(out["picked"][1], out["maps"][1])


def test_num_classes_0_returns_the_pooled_normed_last_stage(downstream):
    _, sub, out = downstream
    net = sub.backbone
    with_head = {p.name for p in create_model("acmix_swin_tiny", num_classes=5, **SMALL).trainable_params()}
    assert with_head - {p.name for p in net.trainable_params()} == {"head.weight", "head.bias"}
    tokens = out["maps"][3].reshape(2, net.num_features, -1).transpose(0, 2, 1)  # the 2x2 map as 4 tokens
    mu, var = tokens.mean(-1, keepdims=True), tokens.var(-1, keepdims=True)
    normed = (tokens - mu) / np.sqrt(var + 1e-5) * net.norm.gamma.asnumpy() + net.norm.beta.asnumpy()
    assert out["feats"].shape == (2, 4, net.num_features)
    np.testing.assert_allclose(out["feats"], normed, rtol=1e-4, atol=1e-5)
    assert out["y"].shape == (2, net.num_features)
    np.testing.assert_allclose(out["y"], out["feats"].mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["pre"], out["y"])


@pytest.mark.slow  # differentiating a four-stage model compiles for about a minute on 2 busy cores
def test_gradients_reach_every_stage_through_the_maps():
    fe = create_model("acmix_swin_tiny", features_only=True, drop_path_rate=0.0, **SMALL)
    params = fe.trainable_params()
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32))

    def loss(inp):
        return sum(ops.mean(m * m) for m in fe(inp))

    fe.set_train(True)
    value, grads = ms.jit(ms.value_and_grad(loss, None, params))(x)
    grads = {p.name: g.asnumpy() for p, g in zip(params, grads)}
    assert np.isfinite(value.asnumpy()) and all(np.isfinite(g).all() for g in grads.values())
    assert np.abs(grads["patch_embed.proj.weight"]).max() > 0
    for i in range(4):
        assert np.abs(grads[f"layers.{i}.blocks.0.attn.qkv.weight"]).max() > 0, i
    # the maps are taken before the final norm, as timm's features_only
    assert not grads["norm.gamma"].any() and not grads["norm.beta"].any()


@pytest.mark.parametrize("out_indices", [(4,), (), (-1, 2)])
def test_bad_out_indices_are_a_clear_error(out_indices):
    with pytest.raises(ValueError, match="out_indices"):
        create_model("acmix_swin_tiny", features_only=True, out_indices=out_indices, **SMALL)
