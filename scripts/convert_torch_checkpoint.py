"""Convert an official PyTorch ACmix checkpoint into a MindSpore checkpoint of this project.

python scripts/convert_torch_checkpoint.py --model acmix_swin_tiny --src swin_acmix_tiny.pth --out acmix_swin_tiny.ckpt
python scripts/convert_torch_checkpoint.py --model acmix_swin_tiny --src small.pth --out small.ckpt \\
    --num_classes 10 --model_kwargs "{img_size: 32, patch_size: 2, embed_dim: 32, depths: [2, 2], num_heads: [2, 4]}"

Reads the official layouts (Swin: weights under ``model``; the ResNet training script: under ``state_dict``
with a ``module.`` prefix; a bare state_dict), renames BN/LN tensors, drops buffers, then loads strictly into
the MindSpore model: tensors that map to nothing and parameters that nothing maps to are listed, and nothing
is written unless everything fits.  ``.pth``/``.pt`` needs torch (only to read the file); ``.npz`` does not.

Reading never runs code from the file: ``.pth`` is read with torch's weights-only unpickler (tensors and plain
containers; the Swin script's yacs config is read as inert data) and ``.npz`` without pickle.  Anything else is
refused; ``--trust_checkpoint`` reads a ``.pth`` with full unpickling, which runs code from the file.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_v", "3")


TRUST_FLAG = "--trust_checkpoint"

# Names the weights-only unpickler reports for what a file wanted to load (torch/_weights_only_unpickler.py).
_WANTED = (
    re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module)"),
    re.compile(r"but got <class '([^']+)'>"),
)


class RefusedCheckpointError(ValueError):
    """A checkpoint that is not read (it needs code from the file, or it is not a checkpoint); one line for the user."""


class _InertCfgNode:
    """Read in place of ``yacs.config.CfgNode``, the config that the official Swin script pickles beside the weights.

    The pickle builds a node with NEWOBJ, then SETITEMS and BUILD; torch's weights-only unpickler allows those two
    only on an exact dict or OrderedDict, so the node becomes a plain OrderedDict (attributes in its ``__dict__``):
    inert data, and yacs is neither needed nor imported.
    """

    def __new__(cls, *args: object, **kwargs: object) -> OrderedDict:
        return OrderedDict()


# Allowed by name only: the file cannot reach any yacs code through this entry.
_SAFE_BY_NAME = [(_InertCfgNode, "yacs.config.CfgNode")]


def _refusal(path: str, message: str) -> str:
    """One line: what the file wanted to load, and the opt-in."""
    for pattern in _WANTED:
        found = pattern.search(message)
        if found:
            what = f"it wants to load {found.group(1)}, which is not tensor data"
            break
    else:
        detail = re.search(r"WeightsUnpickler error: ([^\n]+)", message)
        reason = detail.group(1) if detail else message.strip().splitlines()[0].split(". ")[0]
        what = f"torch's weights-only reader does not accept it ({reason[:200]})"
    return (
        f"refused to read {path}: {what}, and this converter never runs code from a checkpoint; "
        f"if you made this file yourself, pass {TRUST_FLAG} (it runs code from the file)"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _torch_load(path: str, trust: bool) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise SystemExit(
            "reading a .pth needs PyTorch (CPU build is enough): pip install torch; or save the state_dict as .npz"
        ) from exc
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)
    if not hasattr(torch.serialization, "safe_globals"):  # (callable, name) entries need torch 2.5
        raise SystemExit(f"reading a .pth needs torch>=2.5 (found {torch.__version__}); or save the state_dict as .npz")
    # weights_only is passed explicitly: torch's default can be flipped by TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
    try:
        with torch.serialization.safe_globals(_SAFE_BY_NAME):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RefusedCheckpointError(_refusal(path, str(exc))) from None
    except RuntimeError as exc:
        if "weights_only" in str(exc):  # TorchScript archives and the legacy tar format
            raise RefusedCheckpointError(_refusal(path, str(exc))) from None
        raise RefusedCheckpointError(f"cannot read {path}: {_first_line(exc)}") from None
    except Exception as exc:  # a damaged or foreign file trips the unpickler in many ways
        raise RefusedCheckpointError(f"cannot read {path} as a torch checkpoint ({_first_line(exc)})") from None


def _read_npz(path: str) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" not in str(exc):  # numpy names it when a file or an array would need unpickling
            raise
        raise RefusedCheckpointError(f"refused to read {path}: {exc}; state dicts are numeric arrays") from None


def read_state_dict(path: str, trust: bool = False) -> Dict[str, np.ndarray]:
    """``{name: numpy array}`` of an official checkpoint (``.pth``/``.pt`` via torch, ``.npz`` without).

    Args:
        path: checkpoint file.
        trust: read a ``.pth`` with full unpickling, which runs code from the file (only for files you made).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        RefusedCheckpointError: the file holds more than tensors and plain data (and ``trust`` is off), or is
            not a checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such checkpoint: {path}")
    if path.endswith(".npz"):
        state = _read_npz(path)
        state = {k[len("param/") :] if k.startswith("param/") else k: v for k, v in state.items()}
        return {k: v for k, v in state.items() if not k.startswith(("debug/", "input", "output", "config_json"))}
    obj = _torch_load(path, trust)
    # imported only now, so that a refusal does not wait for MindSpore to load
    from src.models.convert import unwrap_checkpoint

    state = unwrap_checkpoint(obj)
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def main(argv: list[str] | None = None) -> int:
    """Convert, print what was done, and return the exit code (2: refused or does not fit; nothing written).

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="registry name, e.g. acmix_swin_tiny")
    parser.add_argument("--src", required=True, help="official checkpoint (.pth, .pt or .npz)")
    parser.add_argument("--out", required=True, help="MindSpore checkpoint to write (.ckpt)")
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--model_kwargs", default="{}", help="YAML mapping of architecture overrides")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument(
        TRUST_FLAG, action="store_true", help="runs code from the file; only for files you made yourself"
    )
    args = parser.parse_args(argv)

    kwargs = yaml.safe_load(args.model_kwargs) or {}
    if not isinstance(kwargs, dict):
        parser.error(f"--model_kwargs must be a YAML mapping, got {args.model_kwargs!r}")
    if os.path.exists(args.out) and not args.force:
        parser.error(f"{args.out} exists; pass --force to overwrite it")
    try:
        state = read_state_dict(args.src, trust=args.trust_checkpoint)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    except RefusedCheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from src.checkpoint import param_mismatches, save_checkpoint
    from src.models import create_model
    from src.models.convert import convert_state_dict

    params = convert_state_dict(state)
    net = create_model(args.model, num_classes=args.num_classes, **kwargs)
    own = net.parameters_dict()
    missing, unmapped, wrong = param_mismatches(own, params, source="official")
    print(f"{args.src}: {len(state)} tensors -> {len(params)} parameters; model {args.model} has {len(own)}")
    if unmapped or missing or wrong:
        for title, items in (("did not map", unmapped), ("not in the checkpoint", missing), ("wrong shape", wrong)):
            for item in items:
                print(f"  {title}: {item}", file=sys.stderr)
        print("error: the checkpoint does not fit the model (see the lines above); nothing written", file=sys.stderr)
        return 2
    save_checkpoint({k: params[k] for k in own}, args.out, {})
    print(f"wrote {args.out} (every parameter mapped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
