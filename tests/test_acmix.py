"""The ACmix core cell: parity with the official implementation, defined behaviour where it crashes, gradients."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.models.convert import convert_state_dict
from src.models.layers import ACmix, acmix_conv_path, grouped_conv2d, reflect_indices, shift_kernel
from tests.conftest import assert_parity, load_fixture
from tests.reference_acmix import acmix_reference


def _randomize(net: ACmix, rng: np.random.Generator) -> dict:
    """Random weights everywhere (rates and dep_conv included); returns them by official name."""
    out = {}
    for name, p in net.parameters_and_names():
        val = rng.standard_normal(p.shape).astype(np.float32) * (0.5 if p.ndim > 1 else 0.2)
        if name in ("rate1", "rate2"):
            val = rng.uniform(0.25, 1.25, p.shape).astype(np.float32)
        p.set_data(Tensor(val))
        out[name] = val
    return out


@pytest.mark.parametrize("fixture", ["acmix_module_s1", "acmix_module_s2"])
@pytest.mark.parametrize("impl,conv_impl", [("blocked", "conv"), ("blocked", "matmul"), ("unfold", "conv")])
def test_parity_with_official_module(fixture, impl, conv_impl):
    cfg, params, x, y_ref, debug = load_fixture(fixture)
    net = ACmix(**cfg["init_kwargs"], attn_impl=impl, group_conv_impl=conv_impl)
    not_loaded = ms.load_param_into_net(net, convert_state_dict(params), strict_load=True)
    assert not_loaded == ([], [])
    net.set_train(False)
    assert_parity(net(Tensor(x)).asnumpy(), y_ref)


def test_official_reference_matches_numpy_restatement():
    """The test's own float64 re-statement reproduces the official fixture (so it is a valid oracle below)."""
    cfg, params, x, y_ref, _ = load_fixture("acmix_module_s2")
    assert_parity(
        acmix_reference(
            x, params, **{k: v for k, v in cfg["init_kwargs"].items() if k not in ("in_planes", "out_planes")}
        ),
        y_ref,
    )


@pytest.mark.parametrize(
    "h,w,kw",
    [
        (15, 9, dict(stride=2)),  # odd sizes with stride 2: the official code crashes
        (7, 10, dict(stride=3)),
        (11, 13, dict(kernel_conv=5)),  # official padding is hard-coded to 1
        (9, 8, dict(kernel_conv=1)),
        (10, 12, dict(dilation=2)),  # official: crashes
        (12, 11, dict(dilation=2, stride=2, kernel_att=3)),
        (3, 3, dict()),  # maps not larger than kernel_att // 2: reflection is folded again
        (2, 5, dict(stride=2)),
        (1, 1, dict()),
        (1, 4, dict(kernel_att=5)),
    ],
)
@pytest.mark.parametrize("conv_impl", ["conv", "matmul"])
def test_defined_behaviour_beyond_the_official_limits(h, w, kw, conv_impl, rng):
    net = ACmix(8, 8, head=2, **{"kernel_att": 7, **kw}, block_size=3, group_conv_impl=conv_impl)
    params = _randomize(net, rng)
    x = rng.standard_normal((2, 8, h, w)).astype(np.float32)
    y = net(Tensor(x)).asnumpy()
    s = kw.get("stride", 1)
    assert y.shape == (2, 8, -(-h // s), -(-w // s))
    ref = acmix_reference(x, params, head=2, **{"kernel_att": 7, **kw})
    assert_parity(y, ref)


@pytest.mark.parametrize("block", [1, 4, 16])
def test_block_size_changes_nothing(block, rng):
    x = Tensor(rng.standard_normal((1, 16, 13, 11)).astype(np.float32))
    a, b = ACmix(16, 16, stride=2), ACmix(16, 16, stride=2, block_size=block)
    ms.load_param_into_net(b, {n: p for n, p in a.parameters_and_names()}, strict_load=True)
    np.testing.assert_allclose(a(x).asnumpy(), b(x).asnumpy(), atol=1e-5)


def test_reflect_indices_equal_reflection_padding_where_defined():
    for size, pad in [(5, 3), (8, 3), (4, 3), (2, 1)]:
        got = reflect_indices(size, pad, size + 2 * pad).asnumpy()
        want = np.pad(np.arange(size), pad, mode="reflect")
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(reflect_indices(3, 4, 11).asnumpy(), [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2])
    np.testing.assert_array_equal(reflect_indices(1, 3, 7).asnumpy(), [0] * 7)


def test_initial_state():
    net = ACmix(16, 16, kernel_conv=3)
    np.testing.assert_array_equal(net.dep_conv.weight.asnumpy(), shift_kernel(16, 3))
    assert net.rate1.asnumpy().tolist() == [0.5] and net.rate2.asnumpy().tolist() == [0.5]
    assert net.dep_conv.bias is None and net.fc.bias is None
    names = {n for n, _ in net.parameters_and_names()}
    assert names == {
        "rate1", "rate2", "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight",
        "conv3.bias", "conv_p.weight", "conv_p.bias", "fc.weight", "dep_conv.weight",
    }  # fmt: skip


def test_initial_conv_path_shifts_and_sums(rng):
    """At initialisation the conv path shifts the fc maps and sums them: with fc taking one feature group for
    every tap, each output is the 3x3 zero-padded box sum of that group (per head_dim index)."""
    head, hd = 2, 3
    net = ACmix(6, 6, head=head, kernel_conv=3)
    fc = np.zeros((9, 3 * head, 1, 1), np.float32)
    fc[:, 1, 0, 0] = 1.0  # group 1 = q of head 1
    feats = rng.standard_normal((1, hd * 3 * head, 5, 4)).astype(np.float32)  # channel d*3*head + g

    def path(x, w_fc, w_dep):
        return acmix_conv_path(x, w_fc, None, w_dep, hd)

    out = ms.jit(path)(Tensor(feats), Tensor(fc), net.dep_conv.weight).asnumpy()
    for d in range(hd):
        src = np.pad(feats[0, d * 3 * head + 1], 1)
        box = sum(src[dy : dy + 5, dx : dx + 4] for dy in range(3) for dx in range(3))
        for o in range(d * head, (d + 1) * head):  # group d writes head consecutive outputs
            np.testing.assert_allclose(out[0, o], box, atol=1e-5)


def test_gradients_reach_every_parameter(rng):
    net = ACmix(8, 8, head=2, stride=2)
    net.set_train(True)
    x = Tensor(rng.standard_normal((2, 8, 10, 9)).astype(np.float32))

    def loss(inp):
        return (net(inp) ** 2).mean()

    grad_fn = ms.jit(ms.value_and_grad(loss, None, net.trainable_params()))
    _, grads = grad_fn(x)
    for p, g in zip(net.trainable_params(), grads):
        assert np.abs(g.asnumpy()).max() > 0, f"no gradient reaches {p.name}"


def _square_loss(net):
    def loss(inp):
        return (net(inp) ** 2).sum()

    return loss


def test_gradients_match_between_formulations(rng):
    a = ACmix(8, 8, head=2, stride=2, group_conv_impl="conv")
    b = ACmix(8, 8, head=2, stride=2, attn_impl="unfold", group_conv_impl="matmul")
    ms.load_param_into_net(b, {n: p for n, p in a.parameters_and_names()}, strict_load=True)
    x = Tensor(rng.standard_normal((2, 8, 12, 12)).astype(np.float32))
    grads = [ms.jit(ms.grad(_square_loss(net), 0, net.trainable_params()))(x) for net in (a, b)]
    for ga, gb in zip(grads[0][1], grads[1][1]):
        np.testing.assert_allclose(ga.asnumpy(), gb.asnumpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[0][0].asnumpy(), grads[1][0].asnumpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(kernel_att=4), "kernel_att"),
        (dict(kernel_conv=2), "kernel_conv"),
        (dict(head=3), "divisible"),
        (dict(stride=0), "stride"),
        (dict(attn_impl="fast"), "attn_impl"),
        (dict(attn_impl="unfold", dilation=2), "dilation"),
        (dict(group_conv_impl="winograd"), "group_conv_impl"),
    ],
)
def test_bad_arguments_are_clear_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ACmix(16, 16, **kw)


def test_runs_under_jit_inside_a_larger_cell(rng):
    net = nn.SequentialCell([ACmix(4, 8, head=2), nn.ReLU()])
    y = net(Tensor(rng.standard_normal((1, 4, 5, 6)).astype(np.float32)))
    assert y.shape == (1, 8, 5, 6)
    assert not np.isnan(ops.sum(y).asnumpy())


@pytest.mark.parametrize(
    "h,w,k,s,d,groups",
    [
        (9, 11, 3, 1, 1, 4),
        (9, 11, 3, 2, 1, 4),
        (8, 7, 5, 3, 1, 2),
        (10, 10, 3, 2, 2, 1),
        (1, 2, 3, 2, 1, 2),
        (6, 5, 1, 2, 1, 4),
    ],
)
def test_grouped_conv2d_equals_conv2d(h, w, k, s, d, groups, rng):
    x = Tensor(rng.standard_normal((2, 12, h, w)).astype(np.float32))
    wt = Tensor(rng.standard_normal((8, 12 // groups, k, k)).astype(np.float32))
    want = ops.conv2d(x, wt, None, s, "pad", d * (k // 2), d, groups).asnumpy()

    def conv(a, b):
        return grouped_conv2d(a, b, groups, s, d)

    got = ms.jit(conv)(x, wt).asnumpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
