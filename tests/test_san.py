"""ACmix-SAN: the patchwise cell against a numpy re-statement, its hand-written backward, counts, training,
the downstream views (``num_classes=0``, ``features_only``, ``pretrained``)."""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.models import create_model, list_models
from src.models.acmix_san import STAGE_WIDTHS
from src.models.flops import count_macs, count_params
from src.models.layers.acmix import shift_kernel
from src.models.layers.patchwise_attention import PatchwiseAggregation, PatchwiseAttentionACmix
from tests.conftest import graph_train_step
from tests.test_resnet import (
    check_feature_info,
    check_heads,
    check_pretrained,
)

# Paper (Table / README of the official ACmix): params, multiply-adds at 224x224, 1000 classes.
PAPER = {"acmix_san10": (12.1e6, 1.9e9), "acmix_san15": (16.6e6, 2.7e9), "acmix_san19": (21.2e6, 3.4e9)}
# SAN README (patchwise), the host without the convolution path.
SAN_PARAMS = {"acmix_san10": 11.8e6, "acmix_san15": 16.2e6, "acmix_san19": 20.5e6}
DEPTHS = {"acmix_san10": (2, 1, 2, 4, 1), "acmix_san15": (3, 2, 3, 5, 2), "acmix_san19": (3, 3, 4, 6, 3)}
KERNELS = (3, 7, 7, 7, 7)

_MODELS: dict = {}


def _full(name: str):
    if name not in _MODELS:
        _MODELS[name] = create_model(name)
    return _MODELS[name]


def _sams(net) -> list:
    return [c for _, c in net.cells_and_names() if isinstance(c, PatchwiseAttentionACmix)]


# ----------------------------------------------------------------------------------------------
# numpy re-statement (float64, loops; reflection written as repeated mirroring)


def _reflect(i: int, n: int) -> int:
    if n == 1:
        return 0
    while i < 0 or i >= n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def _np(p) -> np.ndarray:
    return p.asnumpy().astype(np.float64)


def _bn_eval(x: np.ndarray, bn: nn.BatchNorm2d) -> np.ndarray:
    shape = (1, -1, 1, 1)
    scale = _np(bn.gamma).reshape(shape) / np.sqrt(_np(bn.moving_variance).reshape(shape) + bn.eps)
    return (x - _np(bn.moving_mean).reshape(shape)) * scale + _np(bn.beta).reshape(shape)


def _conv1x1(x: np.ndarray, conv: nn.Conv2d) -> np.ndarray:
    w = _np(conv.weight)
    y = np.einsum("oc,bchw->bohw", w.reshape(w.shape[0], w.shape[1]), x)
    return y if conv.bias is None else y + _np(conv.bias).reshape(1, -1, 1, 1)


def _aggregate(x: np.ndarray, w: np.ndarray, k: int, s: int, d: int) -> np.ndarray:
    """SAN's aggregation, w (B, Cw, k*k, Ho, Wo): out[c, o] = sum_tap w[c % Cw, tap, o] * x[c, o*s + tap*d - p]."""
    b, c, h, wd = x.shape
    cw, ho, wo = w.shape[1], w.shape[3], w.shape[4]
    p = d * (k - 1) // 2
    out = np.zeros((b, c, ho, wo))
    for ch in range(c):
        for t in range(k * k):
            for i in range(ho):
                for j in range(wo):
                    yy, xx = _reflect(i * s + (t // k) * d - p, h), _reflect(j * s + (t % k) * d - p, wd)
                    out[:, ch, i, j] += w[:, ch % cw, t, i, j] * x[:, ch, yy, xx]
    return out


def reference_sam(cell: PatchwiseAttentionACmix, x: np.ndarray) -> np.ndarray:
    """The cell in eval mode, restated from SAN's SAM plus the ACmix convolution path."""
    b, _, h, wd = x.shape
    k, s, d, kc = cell.kernel_att, cell.stride, cell.dilation, cell.kernel_conv
    rel, mid, cw = cell.rel_planes, cell.mid_planes, cell.weight_planes
    ho, wo = math.ceil(h / s), math.ceil(wd / s)
    x1, x2, x3 = _conv1x1(x, cell.conv1), _conv1x1(x, cell.conv2), _conv1x1(x, cell.conv3)

    # attention path: w = conv_w([x1 at the query, unfolded x2]) (channel c*k*k + tap), then aggregate x3
    p = d * (k - 1) // 2
    x2u = np.zeros((b, rel * k * k, ho, wo))
    for c in range(rel):
        for t in range(k * k):
            for i in range(ho):
                for j in range(wo):
                    yy, xx = _reflect(i * s + (t // k) * d - p, h), _reflect(j * s + (t % k) * d - p, wd)
                    x2u[:, c * k * k + t, i, j] = x2[:, c, yy, xx]
    z = np.concatenate([x1[:, :, ::s, ::s], x2u], 1)
    seq = cell.conv_w
    z = _conv1x1(np.maximum(_bn_eval(z, seq[0]), 0), seq[2])
    z = _conv1x1(np.maximum(_bn_eval(z, seq[3]), 0), seq[5])
    att = _aggregate(x3, z.reshape(b, cw, k * k, ho, wo), k, s, d)

    # convolution path: feature group g of index j is Stage I channel g*Cw + j; fc mixes the groups per j into
    # kc*kc maps, and dep_conv (groups = Cw, zero padding) shifts and sums them
    feats = np.concatenate([x1, x2, x3], 1).reshape(b, -1, cw, h, wd)
    fc = _np(cell.fc.weight).reshape(kc * kc, -1)
    f = np.einsum("tg,bgjhw->bjthw", fc, feats)  # (B, Cw, kc*kc, H, W)
    dep = _np(cell.dep_conv.weight)  # (mid, kc*kc, kc, kc)
    pc = d * (kc // 2)
    fp = np.pad(f, ((0, 0), (0, 0), (0, 0), (pc, pc), (pc, pc)))
    conv = np.zeros((b, mid, ho, wo))
    for o in range(mid):
        g = o // (mid // cw)
        for u in range(kc):
            for v in range(kc):
                win = fp[:, g, :, u * d : u * d + (ho - 1) * s + 1 : s, v * d : v * d + (wo - 1) * s + 1 : s]
                conv[:, o] += np.einsum("t,bthw->bhw", dep[o, :, u, v], win)
    return _np(cell.rate1) * att + _np(cell.rate2) * conv


def _randomise(cell: PatchwiseAttentionACmix, rng: np.random.Generator) -> None:
    """Non-trivial BN statistics, mixing scalars and convolution-path kernels (not only the shift init)."""
    for _, p in cell.parameters_and_names():
        if "moving_variance" in p.name:
            p.set_data(Tensor(rng.uniform(0.5, 2.0, p.shape).astype(np.float32)))
        elif any(key in p.name for key in ("moving_mean", "gamma", "beta", "dep_conv", "rate")):
            p.set_data(Tensor(rng.uniform(-1.0, 1.0, p.shape).astype(np.float32)))


# ----------------------------------------------------------------------------------------------
# the cell


@pytest.mark.parametrize(
    "h, w, k, kc, s, d, agg, conv_impl",
    [
        (5, 4, 7, 3, 1, 1, "tap", "conv"),  # map smaller than the window: reflection folds again
        (6, 7, 3, 3, 2, 1, "tap", "matmul"),  # stride 2, odd sizes
        (7, 6, 3, 5, 1, 2, "tap", "conv"),  # dilation 2, kernel_conv 5
        (5, 4, 7, 3, 1, 1, "unfold", "conv"),
    ],
)
def test_cell_matches_numpy_restatement(rng, h, w, k, kc, s, d, agg, conv_impl):
    cell = PatchwiseAttentionACmix(8, 4, 8, 4, k, kc, s, d, conv_impl, agg_impl=agg)
    _randomise(cell, rng)
    cell.set_train(False)
    x = rng.standard_normal((2, 8, h, w)).astype(np.float32)
    y = cell(Tensor(x)).asnumpy()
    ref = reference_sam(cell, x.astype(np.float64))
    assert y.shape == (2, 8, math.ceil(h / s), math.ceil(w / s))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


class _AggGrad(nn.Cell):
    def __init__(self, agg: nn.Cell) -> None:
        super().__init__()
        self.agg = agg
        self.grad = ms.grad(self.loss, (0, 1))

    def loss(self, x, w, r):
        return (self.agg(x, w) * r).sum()

    def construct(self, x, w, r):
        return self.agg(x, w), self.grad(x, w, r)


# padding beyond the map (folded reflection), stride and dilation, a 1-pixel axis with stride 3
@pytest.mark.parametrize("h, w, k, s, d", [(3, 2, 5, 1, 1), (8, 7, 3, 2, 2), (4, 1, 3, 3, 1)])
def test_aggregation_and_its_backward_match_numpy(rng, h, w, k, s, d):
    """Output and the hand-written gradients of the per-tap aggregation (``_TapSum.bprop``) against numpy."""
    ho, wo = math.ceil(h / s), math.ceil(w / s)
    x = rng.standard_normal((2, 6, h, w))
    wt = rng.standard_normal((2, k * k, 3, ho, wo))  # tap-major, 3 weight channels shared by 2 groups
    r = rng.standard_normal((2, 6, ho, wo))
    out, (dx, dw) = _AggGrad(PatchwiseAggregation(k, s, d, "tap"))(*(Tensor(a.astype(np.float32)) for a in (x, wt, r)))
    # loss = sum(out * r) is linear in x and in w: its gradients are the aggregation's adjoints
    ref = _aggregate(x, wt.transpose(0, 2, 1, 3, 4), k, s, d)
    ref_dx = np.zeros_like(x)
    ref_dw = np.zeros_like(wt)
    p = d * (k - 1) // 2
    for c in range(6):
        for t in range(k * k):
            for i in range(ho):
                for j in range(wo):
                    yy, xx = _reflect(i * s + (t // k) * d - p, h), _reflect(j * s + (t % k) * d - p, w)
                    ref_dx[:, c, yy, xx] += wt[:, t, c % 3, i, j] * r[:, c, i, j]
                    ref_dw[:, t, c % 3, i, j] += x[:, c, yy, xx] * r[:, c, i, j]
    for got, want in ((out, ref), (dx, ref_dx), (dw, ref_dw)):
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_cell_macs_by_hand():
    cell = PatchwiseAttentionACmix(8, 4, 8, 4, kernel_att=3, kernel_conv=3)
    # in 8, rel 4, mid 8, share 4 -> Cw = 2 weight channels, G3 = (4 + 4 + 8) / 2 = 8 feature groups; 5x5 map
    stage1 = 8 * (4 + 4 + 8) * 25
    conv_w = (4 * (9 + 1)) * 2 * 25 + 2 * (9 * 2) * 25  # rel*(k*k+1) -> Cw -> k*k*Cw, per output pixel
    aggregation = 8 * 9 * 25
    fc = 8 * 9 * 2 * 25  # G3 groups -> kc*kc maps, for each of the Cw indices
    dep = 8 * 9 * 9 * 25  # mid outputs, each a 3x3 kernel over kc*kc maps
    assert count_macs(cell, (1, 8, 5, 5)) == stage1 + conv_w + aggregation + fc + dep
    # stride 2: Stage I and fc run at 5x5, everything else at 3x3
    cell2 = PatchwiseAttentionACmix(8, 4, 8, 4, kernel_att=3, kernel_conv=3, stride=2)
    strided = stage1 + fc + (conv_w + aggregation + dep) * 9 // 25
    assert count_macs(cell2, (1, 8, 5, 5)) == strided


def test_cell_init_and_argument_checks():
    cell = PatchwiseAttentionACmix(64, 4, 16)
    np.testing.assert_array_equal(cell.dep_conv.weight.asnumpy(), shift_kernel(16, 3))
    assert cell.dep_conv.weight.shape == (16, 9, 3, 3) and cell.fc.weight.shape == (9, 12, 1, 1)
    assert float(cell.rate1.asnumpy()[0]) == 0.5 and float(cell.rate2.asnumpy()[0]) == 0.5
    with pytest.raises(ValueError, match="multiple"):
        PatchwiseAttentionACmix(64, 3, 16)  # rel 3 is not a multiple of Cw = 2
    with pytest.raises(ValueError, match="odd"):
        PatchwiseAttentionACmix(64, 4, 16, kernel_att=4)


# ----------------------------------------------------------------------------------------------
# the models


def test_registered_with_san_depths():
    for name, depths in DEPTHS.items():
        assert name in list_models()
        net = _full(name)
        assert tuple(len(getattr(net, f"layer{i}")) for i in range(5)) == depths
        assert tuple(getattr(net, f"layer{i}")[0].sam.kernel_att for i in range(5)) == KERNELS


@pytest.mark.parametrize("name", sorted(PAPER))
def test_parameters_near_paper(name):
    net = _full(name)
    params = count_params(net)
    assert abs(params / PAPER[name][0] - 1) < 0.03, params
    # the host alone (without fc, dep_conv, rate1, rate2) is SAN-patchwise as published
    conv_path = sum(c.fc.weight.size + c.dep_conv.weight.size + 2 for c in _sams(net))
    assert abs((params - conv_path) / SAN_PARAMS[name] - 1) < 0.01


def _expected_macs(depths, kernels, size: int = 224, classes: int = 1000) -> int:
    """SAN-patchwise plus the ACmix convolution path, restated from the architecture (MACs, batch 1)."""
    macs = 3 * 64 * size * size  # conv_in
    cin = 64
    for width, depth, k in zip(STAGE_WIDTHS, depths, kernels):
        size //= 2  # max-pool 2x2/2
        n = size * size
        rel, mid = width // 16, width // 4
        cw = mid // 8
        block = n * width * (2 * rel + mid)  # Stage I
        block += n * (rel * (k * k + 1) * cw + cw * k * k * cw)  # conv_w's two 1x1 convolutions
        block += n * mid * k * k  # aggregation
        block += n * (2 * rel + mid) * 9 + n * mid * 81  # fc (all Stage I channels -> 9 maps), dep_conv
        block += n * mid * width  # the block's closing 1x1 convolution
        macs += n * cin * width + depth * block  # transition convolution and the blocks
        cin = width
    return macs + cin * classes


@pytest.mark.parametrize("name", sorted(PAPER))
def test_macs_near_paper(name):
    macs = count_macs(_full(name), (1, 3, 224, 224))
    assert macs == _expected_macs(DEPTHS[name], KERNELS)
    assert abs(macs / PAPER[name][1] - 1) < 0.03, macs


def test_kaiming_uniform_init_and_shift_kernels():
    net = _full("acmix_san10")
    for sam in _sams(net):
        np.testing.assert_array_equal(sam.dep_conv.weight.asnumpy(), shift_kernel(sam.mid_planes, 3))
    # PyTorch's default (what SAN trains with): uniform(+-1/sqrt(fan_in)) for weights and biases
    w = net.layer3[0].conv.weight.asnumpy()
    bound = 1.0 / math.sqrt(w.shape[1])
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound


@pytest.mark.parametrize(
    "name, size, kernels",
    [
        ("acmix_san10", 32, KERNELS),  # the real windows; stage maps 16, 8, 4, 2, 1 (reflection folds)
        # same cells as acmix_san10 at other depths: 1-pixel windows keep the compile short
        ("acmix_san15", 48, (1, 1, 1, 1, 1)),  # odd maps after the flooring pools: 24, 12, 6, 3, 1
        ("acmix_san19", 64, (1, 1, 1, 1, 1)),
    ],
)
@pytest.mark.slow  # a full-depth model compiled in graph mode: minutes on 2 cores
def test_forward_backward_graph_mode(name, size, kernels):
    net = create_model(name, num_classes=10, layers=[1] * 5, kernels=kernels)
    x = Tensor(np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32))
    grads = graph_train_step(net, x)  # finite loss and gradients, eval output (2, 10)
    assert len(grads) == len(net.trainable_params())
    for leaf in ("rate1", "rate2", "fc.weight", "dep_conv.weight", "conv_w.5.weight", "conv1.weight"):
        assert np.abs(grads[f"layer0.0.sam.{leaf}"]).max() > 0, leaf


# ----------------------------------------------------------------------------------------------
# downstream views (the checks are shared with tests/test_resnet.py)

SMALL = {"layers": (1,) * 5, "kernels": (3,) * 5}


def test_feature_info_of_registered_models():
    for name in sorted(DEPTHS):  # stages 1..4 of the five (stage 0 has stride 2)
        check_feature_info(name, STAGE_WIDTHS[1:])


def test_heads_and_bad_out_indices():
    check_heads("acmix_san10", **SMALL)


def test_pretrained_views(tmp_path):
    check_pretrained("acmix_san10", tmp_path, {"layers": (1, 1, 2, 1, 1)}, **SMALL)


# The graph-mode views (features_only, num_classes=0) of every SAN at full depth are in tests/test_features.py; the
# gradients through features_only are checked in graph mode on ACmix-ResNet, whose FeatureExtractor is the same
# cell.
