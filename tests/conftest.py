"""Shared test set-up: graph mode on CPU, the repository on sys.path, fixture loading."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

import mindspore as ms  # noqa: E402

ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")


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


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
