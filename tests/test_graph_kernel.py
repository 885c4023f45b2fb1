"""Graph-kernel fusion (on by default for CPU graph mode): the fused graphs keep parity, and transposes are compact."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mindspore import Tensor, nn

from src.env import graph_kernel_enabled
from src.models.layers.common import _transpose_plan, compact_transpose
from tests.conftest import ROOT


def _plan_result(x: np.ndarray, perm: tuple) -> np.ndarray:
    sizes, small = _transpose_plan(x.shape, perm)
    ref_shape = tuple(x.shape[a] for a in perm)
    return (x.reshape(-1) if not small else np.transpose(x.reshape(sizes), small)).reshape(ref_shape)


def test_transpose_plan_equals_numpy_for_every_permutation():
    rng = np.random.default_rng(0)
    for shape in [(2, 1, 3, 1, 2), (1, 1, 2), (3, 2, 1, 2, 1, 2, 1), (2, 3, 4, 5)]:
        x = rng.standard_normal(shape)
        for perm in itertools.permutations(range(len(shape))):
            np.testing.assert_array_equal(_plan_result(x, perm), np.transpose(x, perm), err_msg=f"{shape} {perm}")


def test_transpose_plan_drops_size_one_axes_and_merges_neighbours():
    # the 7-D tile transpose that crashes the graph-kernel compiler becomes a 3-D one
    assert _transpose_plan((2, 64, 4, 1, 13, 1, 13), (0, 2, 3, 5, 4, 6, 1)) == ((2, 64, 4 * 13 * 13), (0, 2, 1))
    assert _transpose_plan((2, 3, 1, 4), (0, 2, 1, 3)) == ((), ())  # only a size-1 axis moves: a reshape
    assert _transpose_plan((2, 3, 4), (0, 1, 2)) == ((), ())


def test_compact_transpose_in_graph_mode():
    class Net(nn.Cell):
        def construct(self, x):
            return compact_transpose(x * 2.0, (0, 2, 3, 5, 4, 6, 1)) + 1.0

    for shape in [(2, 3, 2, 1, 5, 1, 4), (2, 3, 2, 2, 5, 3, 4)]:  # compacted, and left whole
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        expected = np.transpose(x * 2, (0, 2, 3, 5, 4, 6, 1)) + 1
        np.testing.assert_allclose(Net()(Tensor(x)).asnumpy(), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "setting, target, mode, training, expected",
    [
        ("auto", "CPU", "graph", False, True),
        ("auto", "CPU", "graph", True, False),  # fused backward graphs give wrong gradients (test below)
        ("auto", "GPU", "graph", False, False),
        ("auto", "Ascend", "graph", False, False),
        ("auto", "CPU", "pynative", False, False),
        ("on", "GPU", "graph", False, True),
        ("on", "CPU", "graph", True, True),
        ("off", "CPU", "graph", False, False),
    ],
)
def test_graph_kernel_setting(setting, target, mode, training, expected):
    assert graph_kernel_enabled(setting, target, mode, training) is expected


def test_bad_graph_kernel_setting_is_an_error():
    with pytest.raises(ValueError, match="graph_kernel"):
        graph_kernel_enabled("yes", "CPU")


def _run_script(script: str, tmp_path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOG_v="3", MS_COMPILER_CACHE_PATH=str(tmp_path / "kernels"))
    path = tmp_path / "check.py"  # a file, not -c: MindSpore reads the source of what it compiles
    path.write_text(script, encoding="utf-8")
    try:
        return subprocess.run(
            [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"fused compilation did not finish in {timeout} s (a kernel-compiler crash hangs MindSpore): {exc}")


# Runs in its own process: fusion is a process-wide context switch, and a crash of the kernel compiler must fail
# this test (by the timeout) rather than hang the suite.
_FUSED_PARITY = textwrap.dedent(
    """
    import sys
    import mindspore as ms
    from mindspore import Tensor
    sys.path.insert(0, {root!r})
    from src.env import init_env
    init_env("CPU", "graph", 0, graph_kernel="on")
    assert ms.get_context("enable_graph_kernel")
    from src.models.acmix_resnet import ACmixResNet
    from src.models.acmix_swin import SwinTransformerACmix
    from src.models.convert import convert_state_dict
    from src.models.layers import ACmix
    from tests.conftest import assert_parity, load_fixture
    for name, cls in [("acmix_module_s2", ACmix), ("acmix_resnet_small", ACmixResNet),
                      ("acmix_swin_tiny_small", SwinTransformerACmix)]:
        cfg, params, x, y_ref, _ = load_fixture(name)
        net = cls(**cfg["init_kwargs"])
        assert ms.load_param_into_net(net, convert_state_dict(params), strict_load=True) == ([], [])
        net.set_train(False)
        assert_parity(net(Tensor(x)).asnumpy(), y_ref)
        print("parity", name, flush=True)
    """
)


@pytest.mark.slow
def test_fused_graphs_keep_parity_with_the_official_fixtures(tmp_path):
    proc = _run_script(_FUSED_PARITY.format(root=str(ROOT)), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("parity") == 3, proc.stdout
    assert (tmp_path / "kernels" / "akg_kernel_meta").is_dir()  # the cache went where it was told to


# One loss-and-gradient step of a small ACmix-Swin, fused or not; prints the worst relative gradient difference.
_FUSED_GRADIENTS = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {root!r})
    import mindspore as ms
    from mindspore import Tensor, nn
    from src.env import init_env
    from src.models import create_model

    def grads(fused):
        init_env("CPU", "graph", 3, graph_kernel="on" if fused else "off", training=True)
        net = create_model("acmix_swin_tiny", num_classes=3, img_size=16, patch_size=2, window_size=4,
                           depths=[1, 1], num_heads=[2, 4], embed_dim=16, drop_path_rate=0.0)
        net.set_train(True)
        loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

        def forward(x, y):
            return loss_fn(net(x), y)

        step = ms.jit(ms.value_and_grad(forward, None, net.trainable_params()))
        rng = np.random.default_rng(0)
        x = Tensor(rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
        _, g = step(x, Tensor(np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)))
        return {{p.name: v.asnumpy() for p, v in zip(net.trainable_params(), g)}}

    fused, plain = grads(True), grads(False)
    worst = max((float(np.abs(fused[k] - plain[k]).max() / (np.abs(plain[k]).max() + 1e-12)), k) for k in plain)
    print("worst", worst[0], worst[1], flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="MindSpore 2.8 CPU graph-kernel fusion miscompiles parts of the ACmix-Swin backward graph, so "
    "graph_kernel 'auto' leaves training unfused; when this passes, fusion can be allowed for training",
)
def test_fused_training_gradients_equal_unfused_ones(tmp_path):
    proc = _run_script(_FUSED_GRADIENTS.format(root=str(ROOT)), tmp_path)
    if proc.returncode != 0:  # not the expected failure: make it a real one
        pytest.fail(proc.stderr[-3000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("worst")][-1]
    worst = float(line.split()[1])
    assert worst < 1e-3, line  # measured: about 6e3 (patch_embed.proj.bias) with MindSpore 2.8.0
