"""The checkpoint converter never runs code from a file: refusals, the opt-in, and the official layouts it reads."""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import shlex
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, assert_parity, load_fixture
from tests.test_export import FAMILIES, SWIN_FIXTURE_KWARGS

SCRIPT = ROOT / "scripts" / "convert_torch_checkpoint.py"
RESNET = ["--model", "acmix_resnet26", "--num_classes", "10", "--model_kwargs", FAMILIES["acmix_resnet26"]]
SWIN = ["--model", "acmix_swin_tiny", "--num_classes", "10", "--model_kwargs", SWIN_FIXTURE_KWARGS]


def _convert(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, GLOG_v="3", **(env or {})),
    )  # fmt: skip


def _assert_refused(proc: subprocess.CompletedProcess, *named: str) -> None:
    """Exit code 2 and one line on stderr, without a traceback, that contains each of ``named``."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for word in named:
        assert word in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def converter() -> types.ModuleType:
    """The converter script imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("convert_torch_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _SystemOnLoad:
    """Unpickling this runs a shell command: what a hostile checkpoint would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _OpenOnLoad:
    """Unpickling this creates a file without a shell (builtins.open)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _torch_state(params: Dict[str, np.ndarray], prefix: str = "") -> OrderedDict[str, Any]:
    import torch

    return OrderedDict((prefix + k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in params.items())


@pytest.mark.parametrize("force_unsafe_default", [False, True], ids=["torch-default", "TORCH_FORCE_NO_WEIGHTS_ONLY"])
def test_hostile_checkpoint_is_refused_and_never_runs(tmp_path, force_unsafe_default):
    """A .pth whose unpickling would create a marker file: refused, marker and output absent.

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 flips torch's default to full unpickling where the caller leaves
    weights_only unset; the refusal must not depend on that default.
    """
    torch = pytest.importorskip("torch", reason="writing and reading .pth needs torch")
    marker, out = tmp_path / "MARKER", tmp_path / "x.ckpt"
    bad = tmp_path / "bad.pth"
    torch.save(
        {"model": {"fc.weight": torch.zeros(2, 2)}, "x": _SystemOnLoad(f"touch {shlex.quote(str(marker))}")}, bad
    )
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if force_unsafe_default else {}
    proc = _convert("--model", "acmix_resnet26", "--src", str(bad), "--out", str(out), env=env)
    _assert_refused(proc, "system", "--trust_checkpoint")
    assert not marker.exists()
    assert not out.exists()


def test_other_payloads_are_refused_in_process(tmp_path, converter):
    """A file-creating callable without a shell, and a raw pickle (not torch.save): both refused by name."""
    torch = pytest.importorskip("torch", reason="writing and reading .pth needs torch")
    marker = tmp_path / "MARKER"
    saved = tmp_path / "open.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": _OpenOnLoad(marker)}, saved)
    raw = tmp_path / "raw.pth"
    with open(raw, "wb") as f:
        pickle.dump(_SystemOnLoad(f"touch {shlex.quote(str(marker))}"), f, protocol=2)
    for path, name in ((saved, "open"), (raw, "system")):
        with pytest.raises(converter.RefusedCheckpointError, match=f"{name}.*--trust_checkpoint"):
            converter.read_state_dict(str(path))
    assert not marker.exists()


def test_npz_with_pickled_objects_is_refused(tmp_path):
    """.npz is read with allow_pickle=False: an object array is refused in one line (no torch needed)."""
    src = tmp_path / "objects.npz"
    np.savez(src, **{"fc.weight": np.zeros((2, 2), np.float32), "fc.bias": np.array([{"a": 1}], dtype=object)})
    proc = _convert("--model", "acmix_resnet26", "--src", str(src), "--out", str(tmp_path / "x.ckpt"))
    _assert_refused(proc, "allow_pickle")
    assert not (tmp_path / "x.ckpt").exists()


def test_trust_checkpoint_is_the_opt_in(tmp_path):
    """A checkpoint that also pickles argparse.Namespace (harmless, but not data): refused by default, naming the
    class; converted with --trust_checkpoint."""
    torch = pytest.importorskip("torch", reason="writing and reading .pth needs torch")
    _, params, _, _, _ = load_fixture("acmix_resnet_small")
    src = tmp_path / "with_args.pth"
    torch.save({"model": _torch_state(params), "args": argparse.Namespace(lr=0.1, model="acmix_resnet26")}, src)
    out = tmp_path / "o.ckpt"
    _assert_refused(_convert(*RESNET, "--src", str(src), "--out", str(out)), "argparse.Namespace", "--trust_checkpoint")
    assert not out.exists()
    proc = _convert(*RESNET, "--src", str(src), "--out", str(out), "--trust_checkpoint")
    assert proc.returncode == 0, proc.stderr
    assert "every parameter mapped" in proc.stdout and out.exists()


def _fake_yacs(monkeypatch) -> type:
    """A class that pickles as ``yacs.config.CfgNode`` does (a dict subclass with its flags in ``__dict__``), so
    that the test writes the official Swin layout without yacs."""

    class CfgNode(dict):
        def __init__(self, init: Optional[dict] = None) -> None:
            super().__init__({k: CfgNode(v) if isinstance(v, dict) else v for k, v in (init or {}).items()})
            self.__dict__.update(
                {
                    "__immutable__": True,
                    "__deprecated_keys__": {"MODEL.DROP_RATE_OLD"},
                    "__renamed_keys__": {"EXAMPLE.RENAMED.KEY": ("EXAMPLE.KEY", "note")},
                    "__new_allowed__": False,
                }
            )

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    config = types.ModuleType("yacs.config")
    config.CfgNode = CfgNode
    package = types.ModuleType("yacs")
    package.config = config
    monkeypatch.setitem(sys.modules, "yacs", package)
    monkeypatch.setitem(sys.modules, "yacs.config", config)
    return CfgNode


def test_official_swin_training_checkpoint_converts_with_parity(tmp_path, monkeypatch, converter):
    """The Swin script's layout (model, AdamW state, scheduler, scaler, amp, and the yacs config) is read
    weights-only, the config as inert data, and the converted weights reproduce the official output."""
    torch = pytest.importorskip("torch", reason="writing and reading .pth needs torch")
    from mindspore import Tensor

    from src.checkpoint import load_model_weights
    from src.models import create_model

    _, params, x, y, _ = load_fixture("acmix_swin_tiny_small")
    cfg_node = _fake_yacs(monkeypatch)
    model = _torch_state(params)
    weights = [torch.nn.Parameter(model["head.weight"].clone()), torch.nn.Parameter(model["head.bias"].clone())]
    optimizer = torch.optim.AdamW(weights, lr=5e-4)
    sum(w.sum() for w in weights).backward()
    optimizer.step()
    config = cfg_node(
        {
            "MODEL": {"TYPE": "swin_acmix", "NUM_CLASSES": 10, "SWIN": {"EMBED_DIM": 32, "DEPTHS": [2, 2]}},
            "TRAIN": {"EPOCHS": 300, "BASE_LR": 5e-4, "OPTIMIZER": {"NAME": "adamw", "BETAS": (0.9, 0.999)}},
            "AMP_OPT_LEVEL": "O1",
            "TAG": "default",
        }
    )
    src = tmp_path / "ckpt_epoch_299.pth"
    torch.save(
        {
            "model": model,
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": {"t_initial": 300, "lr_min": 5e-6, "base_values": [5e-4], "noise_range_t": None},
            "max_accuracy": 81.3,
            "epoch": 299,
            "config": config,
            "amp": OrderedDict(loss_scaler0={"loss_scale": 65536.0, "unskipped": 17}),
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "_growth_tracker": 17},
        },
        src,
    )
    # the file needs exactly one class beyond what torch reads weights-only by default
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(src)) == ["yacs.config.CfgNode"]
    monkeypatch.delitem(sys.modules, "yacs.config")
    monkeypatch.delitem(sys.modules, "yacs")

    read = converter._torch_load(str(src), trust=False)
    assert type(read["config"]) is OrderedDict and type(read["config"]["MODEL"]["SWIN"]) is OrderedDict
    assert read["config"]["MODEL"]["SWIN"]["DEPTHS"] == [2, 2] and read["config"].__dict__["__immutable__"] is True
    assert "yacs" not in sys.modules
    # allowed only while the converter reads: nothing stays registered in the process
    assert not [g for g in torch.serialization.get_safe_globals() if isinstance(g, tuple) and "yacs" in g[1]]

    out = tmp_path / "swin.ckpt"
    proc = _convert(*SWIN, "--src", str(src), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "every parameter mapped" in proc.stdout
    net = create_model("acmix_swin_tiny", num_classes=10, **yaml.safe_load(SWIN_FIXTURE_KWARGS))
    load_model_weights(net, str(out))
    net.set_train(False)
    assert_parity(net(Tensor(x.astype(np.float32))).asnumpy(), y)


def test_official_resnet_training_checkpoint_converts(tmp_path):
    """The ResNet script's layout: epoch, arch, a DataParallel state_dict, best_acc1 as a tensor, SGD state."""
    torch = pytest.importorskip("torch", reason="writing and reading .pth needs torch")
    from src.checkpoint import load_model_weights
    from src.models import create_model

    _, params, _, _, _ = load_fixture("acmix_resnet_small")
    state = _torch_state(params, prefix="module.")
    fc = [torch.nn.Parameter(state["module.fc.weight"].clone())]
    optimizer = torch.optim.SGD(fc, lr=0.1, momentum=0.9, weight_decay=1e-4)
    fc[0].sum().backward()
    optimizer.step()
    src = tmp_path / "model_best.pth.tar"
    torch.save(
        {
            "epoch": 90,
            "arch": "ACmix_ResNet",
            "state_dict": state,
            "best_acc1": torch.tensor(71.25),
            "optimizer": optimizer.state_dict(),
        },
        src,
    )
    out = tmp_path / "resnet.ckpt"
    proc = _convert(*RESNET, "--src", str(src), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "every parameter mapped" in proc.stdout
    net = create_model("acmix_resnet26", num_classes=10, **yaml.safe_load(FAMILIES["acmix_resnet26"]))
    load_model_weights(net, str(out))  # strict: raises on anything missing, unexpected or misshapen
    np.testing.assert_array_equal(
        net.layer1[0].conv2.dep_conv.weight.asnumpy(), params["layer1.0.conv2.dep_conv.weight"]
    )
    np.testing.assert_array_equal(net.bn1.moving_variance.asnumpy(), params["bn1.running_var"])
