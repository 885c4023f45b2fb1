"""Convert an official PyTorch ACmix checkpoint into a MindSpore checkpoint of this project.

python scripts/convert_torch_checkpoint.py --model acmix_swin_tiny --src swin_acmix_tiny.pth --out acmix_swin_tiny.ckpt
python scripts/convert_torch_checkpoint.py --model acmix_swin_tiny --src small.pth --out small.ckpt \\
    --num_classes 10 --model_kwargs "{img_size: 32, patch_size: 2, embed_dim: 32, depths: [2, 2], num_heads: [2, 4]}"

Reads the official layouts (Swin: weights under ``model``; the ResNet training script: under ``state_dict``
with a ``module.`` prefix; a bare state_dict), renames BN/LN tensors, drops buffers, then loads strictly into
the MindSpore model: tensors that map to nothing and parameters that nothing maps to are listed, and nothing
is written unless everything fits.  ``.pth``/``.pt`` needs torch (only to read the file); ``.npz`` does not.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_v", "3")


def read_state_dict(path: str):
    """``{name: numpy array}`` of an official checkpoint (``.pth``/``.pt`` via torch, ``.npz`` without).

    Args:
        path: checkpoint file.
    """
    from src.models.convert import unwrap_checkpoint

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such checkpoint: {path}")
    if path.endswith(".npz"):
        with np.load(path) as z:
            state = {k[len("param/") :] if k.startswith("param/") else k: z[k] for k in z.files}
        return {k: v for k, v in state.items() if not k.startswith(("debug/", "input", "output", "config_json"))}
    try:
        import torch
    except ImportError as exc:
        raise SystemExit(
            "reading a .pth needs PyTorch (CPU build is enough): pip install torch; or save the state_dict as .npz"
        ) from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # full training checkpoints pickle a yacs config object
        obj = torch.load(path, map_location="cpu", weights_only=False)
    state = unwrap_checkpoint(obj)
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="registry name, e.g. acmix_swin_tiny")
    parser.add_argument("--src", required=True, help="official checkpoint (.pth, .pt or .npz)")
    parser.add_argument("--out", required=True, help="MindSpore checkpoint to write (.ckpt)")
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--model_kwargs", default="{}", help="YAML mapping of architecture overrides")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    args = parser.parse_args(argv)

    from src.checkpoint import param_mismatches, save_checkpoint
    from src.models import create_model
    from src.models.convert import convert_state_dict

    kwargs = yaml.safe_load(args.model_kwargs) or {}
    if not isinstance(kwargs, dict):
        parser.error(f"--model_kwargs must be a YAML mapping, got {args.model_kwargs!r}")
    if os.path.exists(args.out) and not args.force:
        parser.error(f"{args.out} exists; pass --force to overwrite it")
    try:
        state = read_state_dict(args.src)
    except FileNotFoundError as exc:
        parser.error(str(exc))
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
