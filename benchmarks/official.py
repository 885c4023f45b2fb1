"""The one way this repository imports the official PyTorch code of ACmix from a checkout.

``benchmarks/bench.py --official`` (time and memory side by side) and ``benchmarks/make_fixtures.py`` (the
parity fixtures of ``tests/data``) both load the official files through :func:`load_official`, so what is
benchmarked and what the tests compare against are the same code, imported the same way.  The checkout is a
plain copy of https://github.com/LeapLabTHU/ACmix (e.g. ``git archive HEAD | tar -x -C /tmp/acmix_official``);
nothing of it is kept in this repository.  Needs torch (``pip install -r requirements-bench.txt``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

OFFICIAL_REPO = "LeapLabTHU/ACmix"
# The three files this repository uses, by role.  test_bottleneck.py holds the ACmix module of the ResNet
# family, ResNet_ImageNet.py its Bottleneck/ResNet, the Swin file every ACmix-Swin class.
OFFICIAL_FILES: Dict[str, str] = {
    "acmix": "ResNet/test_bottleneck.py",
    "resnet": "ResNet/ResNet_ImageNet.py",
    "swin": "Swin-Transformer/models/swin_transformer_acmix.py",
}


@dataclass(frozen=True)
class OfficialCode:
    """The imported official files.

    Args:
        root: the checkout they came from.
        acmix: ``ResNet/test_bottleneck.py`` (``ACmix``).
        resnet: ``ResNet/ResNet_ImageNet.py`` (``Bottleneck``, ``ACmix_ResNet``, ``conv1x1``).
        swin: ``Swin-Transformer/models/swin_transformer_acmix.py`` (``WindowAttention_acmix``,
            ``SwinTransformerBlock``, ``SwinTransformer_acmix``).
    """

    root: Path
    acmix: types.ModuleType
    resnet: types.ModuleType
    swin: types.ModuleType


def official_usable(root: Optional[Path]) -> Tuple[bool, str]:
    """Whether ``root`` is a checkout with the official files and torch is importable, and if not, why.

    Args:
        root: the checkout, or None (not requested).
    """
    if root is None:
        return False, "not requested"
    missing = [f for f in OFFICIAL_FILES.values() if not (root / f).is_file()]
    if missing:
        return False, f"{root} lacks {', '.join(missing)}"
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not importable (pip install -r requirements-bench.txt)"
    return True, "ok"


def checkout_commit(root: Path) -> Optional[str]:
    """The commit of a git checkout, or None for a plain copy (``git archive`` output has no .git).

    Args:
        root: the checkout.
    """
    if not (root / ".git").exists():
        return None
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _stand_ins() -> Dict[str, types.ModuleType]:
    """The four third-party helpers the official files import, as modules to put in ``sys.modules``.

    Why stand-ins and not the packages: the Swin file imports DropPath, to_2tuple and trunc_normal_ from
    ``timm.models.layers`` and the ResNet file imports load_state_dict_from_url from
    ``torchvision.models.utils``.  ``pip install timm`` pulls torchvision, current torchvision requires a newer
    torch than the pinned CPU build (pip would replace it) and no longer has ``torchvision.models.utils`` at
    all.  So the four helpers are restated here and used always, installed or not, so that every run imports
    the official code the same way; only DropPath matters numerically, and only at a drop rate above 0.
    """
    import torch

    class DropPath(torch.nn.Module):
        """Stochastic depth: in train mode, zero a whole sample's residual branch with probability drop_prob."""

        def __init__(self, drop_prob: float = 0.0) -> None:
            super().__init__()
            self.drop_prob = float(drop_prob or 0.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.drop_prob == 0.0:
                return x
            keep = 1.0 - self.drop_prob
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x * mask / keep

    def to_2tuple(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, torch.nn.init.trunc_normal_
    timm_models = types.ModuleType("timm.models")
    timm_models.layers = layers
    timm = types.ModuleType("timm")
    timm.models = timm_models

    utils = types.ModuleType("torchvision.models.utils")
    utils.load_state_dict_from_url = torch.hub.load_state_dict_from_url  # only used with pretrained=True
    tv_models = types.ModuleType("torchvision.models")
    tv_models.utils = utils
    tv = types.ModuleType("torchvision")
    tv.models = tv_models
    return {
        "timm": timm,
        "timm.models": timm_models,
        "timm.models.layers": layers,
        "torchvision": tv,
        "torchvision.models": tv_models,
        "torchvision.models.utils": utils,
    }


@contextlib.contextmanager
def _modules(extra: Dict[str, types.ModuleType]) -> Iterator[None]:
    """``sys.modules`` with ``extra`` while the official files execute, then as it was (no lasting shadowing)."""
    saved = {name: sys.modules.get(name) for name in extra}
    sys.modules.update(extra)
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def _exec_file(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_LOADED: Dict[Path, OfficialCode] = {}


def load_official(root: Path) -> OfficialCode:
    """Import the official files of the checkout ``root`` (once per process and checkout).

    They are loaded under private module names, so nothing named ``test_bottleneck``, ``timm`` or
    ``torchvision`` stays in ``sys.modules`` afterwards.

    Args:
        root: the checkout.
    """
    root = Path(root).resolve()
    if root in _LOADED:
        return _LOADED[root]
    ok, why = official_usable(root)
    if not ok:
        raise FileNotFoundError(f"cannot import the official code: {why}")
    extra = _stand_ins()
    with _modules(extra):
        acmix = _exec_file(root / OFFICIAL_FILES["acmix"], "acmix_official_test_bottleneck")
        # ResNet_ImageNet.py imports ACmix by the bare name ``test_bottleneck``
        with _modules({"test_bottleneck": acmix}):
            resnet = _exec_file(root / OFFICIAL_FILES["resnet"], "acmix_official_resnet")
        swin = _exec_file(root / OFFICIAL_FILES["swin"], "acmix_official_swin")
    _LOADED[root] = OfficialCode(root, acmix, resnet, swin)
    return _LOADED[root]
