"""Shared test set-up: graph mode on CPU, the repository on sys.path, fixture loading."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

import mindspore as ms  # noqa: E402

ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")


@pytest.fixture(autouse=True)
def _graph_kernel_off_between_tests():
    """Tests that run the entry points in-process switch graph-kernel fusion on (the CPU default); switch it off
    again so the unit tests after them compile as they were written to (fusion is tested on its own)."""
    yield
    if ms.get_context("enable_graph_kernel"):
        ms.set_context(enable_graph_kernel=False)


def load_fixture(name: str):
    """(config dict, {official name: array}, input, output, debug dict) of a fixture in tests/data."""
    z = np.load(DATA / f"{name}.npz")
    cfg = json.loads(z["config_json"].item())
    params = {k[len("param/") :]: z[k] for k in z.files if k.startswith("param/")}
    debug = {k[len("debug/") :]: z[k] for k in z.files if k.startswith("debug/")}
    return cfg, params, z["input"], z["output"], debug


def assert_parity(actual: np.ndarray, reference: np.ndarray) -> None:
    """The project's parity rule: max abs difference <= 1e-4 * max(1, max|reference|)."""
    assert actual.shape == reference.shape, (actual.shape, reference.shape)
    tol = 1e-4 * max(1.0, float(np.abs(reference).max()))
    diff = float(np.abs(actual.astype(np.float64) - reference).max())
    assert diff <= tol, f"max abs diff {diff:.3e} > tolerance {tol:.3e}"


def graph_train_step(net, x) -> dict:
    """One loss-and-gradient step of ``net`` in graph mode (labels 1, 7, 1, 7, ...); returns {param name: grad}.

    Also checks that the loss and every gradient are finite and that eval mode gives (B, num_classes).
    """
    from mindspore import Tensor, nn

    net.set_train(True)
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

    def forward(inp, lab):
        return loss_fn(net(inp), lab)

    step = ms.jit(ms.value_and_grad(forward, None, net.trainable_params()))
    labels = Tensor(np.array([1, 7] * (x.shape[0] // 2) + [1] * (x.shape[0] % 2), np.int32))
    loss, grads = step(x, labels)
    assert np.isfinite(loss.asnumpy())
    by_name = {p.name: g.asnumpy() for p, g in zip(net.trainable_params(), grads)}
    bad = [n for n, g in by_name.items() if not np.isfinite(g).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    net.set_train(False)
    assert net(x).shape == (x.shape[0], net.num_classes)
    return by_name


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# A tiny ACmix-ResNet run: the train.py / eval.py / export.py arguments of the end-to-end tests.
TINY = [
    "--model", "acmix_resnet26", "--model_kwargs", "{layers: [1, 1, 1, 1]}", "--num_classes", "2",
    "--img_size", "16", "--batch_size", "4", "--num_workers", "1", "--train_crop", "none", "--hflip", "0",
    "--crop_pct", "1.0", "--opt", "adamw", "--lr", "2e-3", "--lr_base_batch", "0", "--weight_decay", "0.01",
    "--warmup_epochs", "0", "--log_interval", "1", "--label_smoothing", "0.0", "--seed", "7",
]  # fmt: skip


def _stripes(vertical: bool, phase: int, size: int = 16) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    idx = (np.arange(size) + phase) % 4 < 2
    if vertical:
        img[:, idx] = 230
    else:
        img[idx, :] = 230
    return img


@pytest.fixture(scope="session")
def stripes(tmp_path_factory) -> str:
    """Two classes (horizontal / vertical stripes at 4 phases, with noise): 16 training and 8 validation images."""
    root = tmp_path_factory.mktemp("stripes")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 8), ("val", 4)):
        for label, vertical in (("horizontal", False), ("vertical", True)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = _stripes(vertical, i % 4).astype(np.int16) + rng.integers(0, 25, (16, 16, 3))
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return str(root)
