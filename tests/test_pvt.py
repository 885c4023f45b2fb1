"""ACmix-PVT: the attention cell against a float64 re-statement, MAC counts, parameter counts, training."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, ops

from src.models import create_model
from src.models.flops import count_macs, count_params
from src.models.layers import shift_kernel
from src.models.layers.global_attention import GlobalAttentionACmix
from src.models.registry import FeatureExtractor
from tests.conftest import assert_parity, graph_train_step

# The paper's figures: params, multiply-adds at 224x224, 1000 classes
PAPER = {"acmix_pvt_tiny": (13e6, 2.0e9), "acmix_pvt_small": (25e6, 3.9e9)}


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def _conv_path(qkv: np.ndarray, p: dict, nh: int, kc: int) -> np.ndarray:
    """(B, H, W, 3C) q|k|v -> (B, H, W, C): fc over the 3*nh groups per head-dim index, then the group conv."""
    b, h, w, c3 = qkv.shape
    c, hd, taps = c3 // 3, c3 // 3 // nh, kc * kc
    groups = qkv.reshape(b, h, w, 3 * nh, hd)  # feature group t*nh + head at index d
    f = np.einsum("jg,bhwgd->bhwdj", p["fc.weight"][:, :, 0, 0], groups) + p["fc.bias"]  # (B, H, W, hd, taps)
    r = kc // 2
    fp = np.zeros((b, h + 2 * r, w + 2 * r, hd, taps))
    fp[:, r : r + h, r : r + w] = f
    out = np.zeros((b, h, w, c))
    for o in range(c):
        d = o // (c // hd)  # dep_conv group of output channel o
        for ky in range(kc):
            for kx in range(kc):
                out[..., o] += fp[:, ky : ky + h, kx : kx + w, d, :] @ p["dep_conv.weight"][o, :, ky, kx]
    return out


def reference_global_acmix(x, p, h, w, nh, sr, kc):
    """Float64 statement of GlobalAttentionACmix: x (B, N, C) with N - H*W leading extra tokens."""
    x = x.astype(np.float64)
    p = {k: v.astype(np.float64) for k, v in p.items()}
    b, n, c = x.shape
    extra, hd = n - h * w, c // nh
    q = x @ p["q.weight"].T + p["q.bias"]
    if sr > 1:
        hr, wr = h // sr, w // sr
        m = x.reshape(b, h, w, c)
        red = np.zeros((b, hr, wr, c))
        for i in range(hr):
            for j in range(wr):
                patch = m[:, i * sr : (i + 1) * sr, j * sr : (j + 1) * sr]
                red[:, i, j] = np.einsum("bpqc,ocpq->bo", patch, p["sr.weight"]) + p["sr.bias"]
        src = _layer_norm(red.reshape(b, hr * wr, c), p["norm.gamma"], p["norm.beta"], 1e-5)
    else:
        hr, wr, src = h, w, x
    kv = src @ p["kv.weight"].T + p["kv.bias"]
    k, v = kv[..., :c], kv[..., c:]
    att = np.zeros((b, n, c))
    for hh in range(nh):
        s = slice(hh * hd, (hh + 1) * hd)
        logits = q[..., s] @ k[..., s].transpose(0, 2, 1) * hd**-0.5
        a = np.exp(logits - logits.max(-1, keepdims=True))
        att[..., s] = (a / a.sum(-1, keepdims=True)) @ v[..., s]
    att = att @ p["proj.weight"].T + p["proj.bias"]

    # conv path: each pixel takes the key/value of the reduced cell covering it (the last one past the floor)
    rows = np.minimum(np.arange(h) // sr, hr - 1)
    cols = np.minimum(np.arange(w) // sr, wr - 1)
    kv_map = kv[:, kv.shape[1] - hr * wr :].reshape(b, hr, wr, 2 * c)[:, rows][:, :, cols]
    qkv = np.concatenate([q[:, extra:].reshape(b, h, w, c), kv_map], -1)
    conv = _conv_path(qkv, p, nh, kc).reshape(b, h * w, c)
    if extra:
        tokens = np.concatenate([q[:, :extra], kv[:, :extra]], -1).reshape(b * extra, 1, 1, 3 * c)
        conv = np.concatenate([_conv_path(tokens, p, nh, kc).reshape(b, extra, c), conv], 1)
    return p["rate1"][0] * att + p["rate2"][0] * conv


def _randomise(cell, rng) -> dict:
    params = {}
    for name, prm in cell.parameters_and_names():
        value = rng.standard_normal(prm.shape).astype(np.float32) * (0.3 if prm.ndim > 1 else 0.5)
        if name == "norm.gamma":
            value = 1.0 + value
        prm.set_data(Tensor(value))
        params[name] = value
    return params


@pytest.mark.parametrize(
    "dim,heads,sr,h,w,extra,kc,impl",
    [
        (8, 2, 2, 4, 6, 0, 3, "auto"),  # reduced map 2x3
        (8, 2, 2, 5, 4, 0, 3, "matmul"),  # odd height: row 4 takes the last reduced row
        (6, 3, 3, 4, 7, 0, 5, "auto"),  # 1x2 reduced map, kernel_conv 5
        (12, 3, 1, 3, 3, 1, 3, "auto"),  # sr 1 with a class token, the last PVT stage
    ],
)
def test_attention_matches_numpy_reference(dim, heads, sr, h, w, extra, kc, impl):
    rng = np.random.default_rng(3)
    cell = GlobalAttentionACmix(dim, heads, qkv_bias=True, sr_ratio=sr, kernel_conv=kc, group_conv_impl=impl)
    params = _randomise(cell, rng)
    cell.set_train(False)
    x = rng.standard_normal((2, extra + h * w, dim)).astype(np.float32)
    out = cell(Tensor(x), h, w).asnumpy()
    assert_parity(out, reference_global_acmix(x, params, h, w, heads, sr, kc))


def test_attention_macs_by_hand():
    # C 8, 2 heads of 4, 4x4 map (16 tokens), sr 2 -> 4 keys, kernel_conv 3
    tokens, keys, c = 16, 4, 8
    q, proj = tokens * c * c, tokens * c * c
    sr = keys * c * c * 2 * 2  # 2x2 kernel, stride 2
    kv = keys * c * 2 * c
    attention = 2 * tokens * keys * c  # logits and weighted sum over all heads
    fc = tokens * (3 * 2) * 9 * 4  # 3*heads groups -> 9 maps, for each of the 4 head-dim indices
    dep = tokens * c * 9 * 9
    cell = GlobalAttentionACmix(8, 2, qkv_bias=True, sr_ratio=2)
    assert count_macs(cell, (1, 4, 4, 8)) == q + sr + kv + attention + proj + fc + dep


@pytest.mark.parametrize("name", sorted(PAPER))
def test_full_models_match_the_paper(name):
    """With PVT's position embeddings (the default) the parameters round to the paper's whole millions."""
    net = create_model(name)
    params, macs = count_params(net), count_macs(net, (1, 3, 224, 224))
    paper_params, paper_macs = PAPER[name]
    assert round(params / 1e6) * 1e6 == paper_params, params
    assert abs(macs / paper_macs - 1) <= 0.03, macs
    assert [(f["num_chs"], f["reduction"], f["module"]) for f in net.feature_info] == [
        (64, 4, "block1"), (128, 8, "block2"), (320, 16, "block3"), (512, 32, "block4"),
    ]  # fmt: skip


def test_structure_init_and_small_map_rule():
    net = create_model(
        "acmix_pvt_tiny", img_size=32, num_classes=5, embed_dims=(8, 16, 24, 32), num_heads=(1, 2, 3, 4),
        depths=(1, 1, 1, 1), sr_ratios=(16, 8, 4, 2),
    )  # fmt: skip
    # maps 8, 4, 2, 1: each reduction shrinks to the map size
    assert net.resolutions == ((8, 8), (4, 4), (2, 2), (1, 1))
    assert [blocks[0].attn.sr_ratio for _, _, blocks in net.stages] == [8, 4, 2, 1]
    tokens = (64, 16, 4, 1 + 1)  # the class token joins the last stage
    # position embeddings by default, under PVT's names
    assert [net.parameters_dict()[f"pos_embed{i + 1}"].shape for i in range(4)] == [
        (1, t, d) for t, d in zip(tokens, (8, 16, 24, 32))
    ]
    without = create_model(
        "acmix_pvt_tiny", img_size=32, num_classes=5, embed_dims=(8, 16, 24, 32), num_heads=(1, 2, 3, 4),
        depths=(1, 1, 1, 1), sr_ratios=(16, 8, 4, 2), pos_embed=False,
    )  # fmt: skip
    assert not [p.name for p in without.trainable_params() if p.name.startswith("pos_embed")]
    assert count_params(net) - count_params(without) == sum(t * d for t, d in zip(tokens, (8, 16, 24, 32)))
    attn = net.block1[0].attn
    np.testing.assert_array_equal(attn.dep_conv.weight.asnumpy(), shift_kernel(8, 3))
    assert attn.rate1.asnumpy()[0] == 0.5 and attn.rate2.asnumpy()[0] == 0.5
    assert not attn.proj.bias.asnumpy().any() and 0 < attn.q.weight.asnumpy().std() < 0.05


def test_clear_errors():
    cell = GlobalAttentionACmix(8, 2, sr_ratio=4)
    with pytest.raises(ValueError, match="smaller than sr_ratio"):
        cell(Tensor(np.zeros((1, 4, 8), np.float32)), 2, 2)
    cell = GlobalAttentionACmix(8, 2, sr_ratio=2)
    with pytest.raises(ValueError, match="sr_ratio 1"):
        cell(Tensor(np.zeros((1, 17, 8), np.float32)), 4, 4)
    with pytest.raises(ValueError, match="divisible"):
        GlobalAttentionACmix(10, 4)


@pytest.mark.parametrize(
    "name,size,overrides",
    [
        ("acmix_pvt_tiny", 64, {"depths": (1, 1, 1, 2), "drop_path_rate": 0.0}),
        ("acmix_pvt_small", 32, {"depths": (1, 2, 1, 1), "pos_embed": False}),
    ],
)
@pytest.mark.slow  # a full-depth model compiled in graph mode: minutes on 2 cores
def test_forward_backward_graph_mode(name, size, overrides):
    """Reduced depth at a small input (maps 16..2 and 8..1) trains a step in graph mode; no parameter is dead."""
    ms.set_seed(0)
    net = create_model(name, num_classes=10, img_size=size, **overrides)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32))
    by_name = graph_train_step(net, x)
    assert len(by_name) == len(net.trainable_params())
    if overrides.get("drop_path_rate", 0.1) == 0.0:
        dead = [n for n, g in by_name.items() if not np.abs(g).any()]
        assert not dead, dead
    last = f"block4.{len(net.block4) - 1}.attn"  # its conv path reaches the head through the class token only
    for leaf in ("rate1", "rate2", "fc.weight", "fc.bias", "dep_conv.weight", "q.weight", "kv.weight"):
        assert np.abs(by_name[f"{last}.{leaf}"]).max() > 0, leaf


# four stages of a 64x64 input: maps 16, 8, 4, 2 (sr 8, 4, 2, 1); one block each to compile fast
SMALL = dict(img_size=64, embed_dims=(8, 16, 24, 32), num_heads=(1, 2, 3, 4), depths=(1, 1, 1, 1))


@pytest.fixture(scope="module")
def downstream():
    """One graph-mode forward of the downstream views of one small backbone (num_classes=0), shared by the tests
    below: the features_only maps, an out_indices subset, the model's output, forward_features and
    forward_head(pre_logits=True)."""
    sub = create_model("acmix_pvt_tiny", features_only=True, out_indices=(3, 1), **SMALL)
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


def test_num_classes_0_returns_the_normed_class_token(downstream):
    _, sub, out = downstream
    net = sub.backbone
    with_head = {p.name for p in create_model("acmix_pvt_tiny", num_classes=5, **SMALL).trainable_params()}
    assert with_head - {p.name for p in net.trainable_params()} == {"head.weight", "head.bias"}
    c = net.embed_dims[-1]
    assert out["feats"].shape == (2, 1 + 4, c)  # class token first, then the 2x2 map
    tokens = out["maps"][3].reshape(2, c, -1).transpose(0, 2, 1)
    normed = _layer_norm(tokens, net.norm.gamma.asnumpy(), net.norm.beta.asnumpy(), 1e-6)
    np.testing.assert_allclose(out["feats"][:, 1:], normed, rtol=1e-4, atol=1e-5)
    assert out["y"].shape == (2, c)
    np.testing.assert_allclose(out["y"], out["feats"][:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["pre"], out["y"])


@pytest.mark.slow  # differentiating a four-stage model compiles for about a minute on 2 busy cores
def test_gradients_reach_every_stage_through_the_maps():
    fe = create_model("acmix_pvt_tiny", features_only=True, drop_path_rate=0.0, **SMALL)
    params = fe.trainable_params()
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32))

    def loss(inp):
        return sum(ops.mean(m * m) for m in fe(inp))

    fe.set_train(True)
    value, grads = ms.jit(ms.value_and_grad(loss, None, params))(x)
    grads = {p.name: g.asnumpy() for p, g in zip(params, grads)}
    assert np.isfinite(value.asnumpy()) and all(np.isfinite(g).all() for g in grads.values())
    for i in range(1, 5):
        for leaf in (f"patch_embed{i}.proj.weight", f"pos_embed{i}", f"block{i}.0.attn.q.weight"):
            assert np.abs(grads[leaf]).max() > 0, leaf
    # the class token reaches the last map through the last stage's attention; the final norm is not used
    assert np.abs(grads["cls_token"]).max() > 0
    assert not grads["norm.gamma"].any() and not grads["norm.beta"].any()


@pytest.mark.parametrize("out_indices", [(4,), (), (-1, 2)])
def test_bad_out_indices_are_a_clear_error(out_indices):
    with pytest.raises(ValueError, match="out_indices"):
        create_model("acmix_pvt_tiny", features_only=True, out_indices=out_indices, **SMALL)
