"""Rebuild the parity fixtures of ``tests/data`` from the official PyTorch code (see ``tests/data/README.md``).

    python benchmarks/make_fixtures.py --official /tmp/acmix_official --out /tmp/fixtures --compare tests/data
    python benchmarks/make_fixtures.py --official /tmp/acmix_official --out tests/data --force   # replace them

For every fixture: build the official class from the recorded constructor arguments, overwrite its floating
parameters and buffers with seeded values (one ``torch.Generator(seed_weights)``, tensors in
``named_modules()`` order, rules in :func:`seeded_state`), draw the input with ``torch.Generator(seed_input)``,
run ``module.eval()`` under ``torch.no_grad()`` in float32 on one CPU thread, record the outputs of a few
submodules with forward hooks, and write an ``.npz`` whose zip entries carry a fixed timestamp, so that the
same torch build gives the same bytes.  ``acmix_swin_tiny_small.pth`` is ``torch.save({"model": state_dict})``
of the Swin model fixture.  ``--compare DIR`` then checks each written file against the one in DIR (bytes,
keys, shapes, largest difference).  The official code is imported by ``benchmarks/official.py``, as in
``benchmarks/bench.py``.  Needs ``pip install -r requirements-bench.txt``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.official import OFFICIAL_FILES, OFFICIAL_REPO, checkout_commit, load_official  # noqa: E402

# What each fixture records about how its numbers were drawn (config_json), one text per rule.
WEIGHT_RULES = {
    "normal": (
        "Conv2d/Linear weight ~ N(0,1)/sqrt(fan_in); Conv2d/Linear bias ~ U(-0.2,0.2); BatchNorm/LayerNorm weight "
        "~ U(0.5,1.5), bias ~ U(-0.2,0.2); BN running_mean ~ U(-0.2,0.2), running_var ~ U(0.5,2.0); rate1, rate2 "
        "~ U(0.25,1.25); relative_position_bias_table ~ 0.5*N(0,1); relative_position_index, attn_mask, "
        "num_batches_tracked kept as built. Drawn in named_modules() order from one torch.Generator(seed_weights)."
    ),
    "quantized5": (
        "as 'normal', except every Conv2d/Linear weight is k*2^e with k uniform in {-2,-1,0,1,2} and "
        "e = round(log2(1/sqrt(2*fan_in))) (exact in fp16/bf16/fp32; chosen so that the large ResNet state_dict "
        "compresses)."
    ),
}
INPUT_RULE = "standard normal, torch.randn with torch.Generator(seed_input)"
SWIN_FILE = OFFICIAL_FILES["swin"]
RESNET_FILE = OFFICIAL_FILES["resnet"]
LAYER_NORM = "torch.nn.LayerNorm (eps 1e-5)"

# The fixtures, as recorded in their config_json (fields computed at run time are added by make_fixture).
FIXTURES: List[Dict[str, Any]] = [
    {
        "name": "acmix_module_s1",
        "file": OFFICIAL_FILES["acmix"],
        "constructor": "ACmix",
        "init_kwargs": {"in_planes": 32, "out_planes": 32, "kernel_att": 7, "head": 4, "kernel_conv": 3, "stride": 1},
        "input_shape": [2, 32, 14, 14],
        "input_layout": "NCHW",
        "debug_modules": ["fc", "dep_conv"],
        "seed_weights": 1001,
    },
    {
        "name": "acmix_module_s2",
        "file": OFFICIAL_FILES["acmix"],
        "constructor": "ACmix",
        "init_kwargs": {"in_planes": 32, "out_planes": 32, "kernel_att": 7, "head": 4, "kernel_conv": 3, "stride": 2},
        "input_shape": [2, 32, 16, 16],
        "input_layout": "NCHW",
        "debug_modules": ["fc", "dep_conv"],
        "seed_weights": 1002,
    },
    {
        "name": "acmix_bottleneck",
        "file": RESNET_FILE,
        "constructor": "Bottleneck",
        "init_kwargs": {
            "inplanes": 64,
            "planes": 16,
            "k_att": 7,
            "head": 4,
            "k_conv": 3,
            "stride": 2,
            "groups": 1,
            "base_width": 64,
            "dilation": 1,
            "downsample": {
                "Sequential": [
                    {
                        "file": RESNET_FILE,
                        "official_function": "conv1x1",
                        "kwargs": {"in_planes": 64, "out_planes": 64, "stride": 2},
                    },
                    {"torch_class": "torch.nn.BatchNorm2d", "kwargs": {"num_features": 64}},
                ]
            },
        },
        "default_kwargs_not_passed": {"norm_layer": "torch.nn.BatchNorm2d (eps 1e-5)"},
        "input_shape": [2, 64, 16, 16],
        "input_layout": "NCHW",
        "debug_modules": ["conv2", "downsample"],
        "seed_weights": 1003,
    },
    {
        "name": "swin_window_attention",
        "file": SWIN_FILE,
        "constructor": "WindowAttention_acmix",
        "init_kwargs": {
            "dim": 32,
            "window_size": [4, 4],
            "num_heads": 2,
            "qkv_bias": True,
            "qk_scale": None,
            "attn_drop": 0.0,
            "proj_drop": 0.0,
        },
        "tuple_kwargs": ["window_size"],
        "forward_kwargs": {"H": 8, "W": 8, "mask": None},
        "input_shape": [2, 8, 8, 32],
        "input_layout": "B, H, W, C",
        "debug_modules": ["fc", "dep_conv", "proj"],
        "seed_weights": 1004,
    },
    {
        "name": "swin_block_shifted",
        "file": SWIN_FILE,
        "constructor": "SwinTransformerBlock",
        "init_kwargs": {
            "dim": 32,
            "input_resolution": [8, 8],
            "num_heads": 2,
            "window_size": 4,
            "shift_size": 2,
            "mlp_ratio": 4.0,
            "qkv_bias": True,
            "qk_scale": None,
            "drop": 0.0,
            "attn_drop": 0.0,
            "drop_path": 0.0,
        },
        "tuple_kwargs": ["input_resolution"],
        "default_kwargs_not_passed": {
            "act_layer": "GELU (official class, F.gelu exact erf form)",
            "norm_layer": LAYER_NORM,
        },
        "input_shape": [2, 64, 32],
        "input_layout": "B, H*W (row-major tokens), C",
        "debug_modules": ["attn"],
        "seed_weights": 1005,
    },
    {
        "name": "acmix_swin_tiny_small",
        "file": SWIN_FILE,
        "constructor": "SwinTransformer_acmix",
        "init_kwargs": {
            "img_size": 32,
            "patch_size": 2,
            "in_chans": 3,
            "num_classes": 10,
            "embed_dim": 32,
            "depths": [2, 2],
            "num_heads": [2, 4],
            "window_size": 4,
            "mlp_ratio": 4.0,
            "qkv_bias": True,
            "qk_scale": None,
            "drop_rate": 0.0,
            "attn_drop_rate": 0.0,
            "drop_path_rate": 0.0,
            "ape": False,
            "patch_norm": True,
            "use_checkpoint": False,
        },
        "default_kwargs_not_passed": {"norm_layer": LAYER_NORM},
        "input_shape": [2, 3, 32, 32],
        "input_layout": "NCHW",
        "debug_modules": ["patch_embed", "layers.0", "layers.1"],
        "seed_weights": 1006,
        "checkpoint": True,  # also written as a training-style .pth (not part of config_json)
    },
    {
        "name": "acmix_resnet_small",
        "file": RESNET_FILE,
        "constructor": "ACmix_ResNet",
        "block": "Bottleneck",
        "init_kwargs": {"layers": [1, 1, 1, 1], "k_att": 7, "head": 4, "k_conv": 3, "num_classes": 10},
        "input_shape": [1, 3, 64, 64],
        "input_layout": "NCHW",
        "debug_modules": ["layer3", "layer4"],
        "seed_weights": 1007,
        "weight_init": "quantized5",
    },
]
SEED_INPUT_OFFSET = 500000  # every fixture's input seed is its weight seed + this


# ------------------------------------------------------------------------------------------ the numbers


def _quantized5(shape: Tuple[int, ...], fan_in: int, gen):
    """k * 2^e, k uniform in {-2..2}: exact in every float format and cheap to compress."""
    import torch

    e = round(math.log2(1.0 / math.sqrt(2.0 * fan_in)))
    return torch.randint(-2, 3, shape, generator=gen).to(torch.float32) * (2.0**e)


def seeded_state(module, seed: int, weight_init: str = "normal") -> None:
    """Overwrite every floating parameter and the BatchNorm running statistics in place, from one generator.

    Tensors are visited module by module in ``named_modules()`` order, each module's own parameters before its
    buffers (the ``state_dict()`` order).  Integer buffers, ``attn_mask`` and ``num_batches_tracked`` stay as the
    official constructor built them.  A floating tensor that no rule covers is an error, so a new official
    parameter cannot slip through with its initial value.

    Args:
        module: the official module.
        seed: ``seed_weights``.
        weight_init: ``"normal"`` or ``"quantized5"`` (Conv2d/Linear weights only).
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)

    def uniform(shape, lo: float, hi: float):
        return torch.rand(shape, generator=gen) * (hi - lo) + lo

    with torch.no_grad():
        for mod_name, mod in module.named_modules():
            own = list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False))
            for name, t in own:
                full = f"{mod_name}.{name}" if mod_name else name
                if not t.is_floating_point() or name == "attn_mask":
                    continue
                shape = tuple(t.shape)
                if isinstance(mod, (nn.Conv2d, nn.Linear)) and name == "weight":
                    fan_in = t[0].numel()
                    if weight_init == "quantized5":
                        value = _quantized5(shape, fan_in, gen)
                    else:
                        value = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
                elif isinstance(mod, (nn.Conv2d, nn.Linear)) and name == "bias":
                    value = uniform(shape, -0.2, 0.2)
                elif isinstance(mod, (nn.BatchNorm2d, nn.LayerNorm)) and name in ("weight", "bias"):
                    value = uniform(shape, 0.5, 1.5) if name == "weight" else uniform(shape, -0.2, 0.2)
                elif isinstance(mod, nn.BatchNorm2d) and name in ("running_mean", "running_var"):
                    value = uniform(shape, -0.2, 0.2) if name == "running_mean" else uniform(shape, 0.5, 2.0)
                elif name in ("rate1", "rate2"):
                    value = uniform(shape, 0.25, 1.25)
                elif name == "relative_position_bias_table":
                    value = 0.5 * torch.randn(shape, generator=gen)
                else:
                    raise ValueError(f"no seeding rule for {full} ({type(mod).__name__})")
                t.copy_(value)


def _build(code, spec: Dict[str, Any]):
    """The official module of a fixture, from its recorded constructor and keyword arguments."""
    import torch

    files = {OFFICIAL_FILES["acmix"]: code.acmix, RESNET_FILE: code.resnet, SWIN_FILE: code.swin}
    kwargs = dict(spec["init_kwargs"])
    for key in spec.get("tuple_kwargs", []):
        kwargs[key] = tuple(kwargs[key])
    if isinstance(kwargs.get("downsample"), dict):
        parts = []
        for part in kwargs["downsample"]["Sequential"]:
            if "official_function" in part:
                parts.append(getattr(files[part["file"]], part["official_function"])(**part["kwargs"]))
            else:
                owner, cls = part["torch_class"].rsplit(".", 1)
                if owner != "torch.nn":
                    raise ValueError(f"{spec['name']}: unexpected downsample part {part}")
                parts.append(getattr(torch.nn, cls)(**part["kwargs"]))
        kwargs["downsample"] = torch.nn.Sequential(*parts)
    return getattr(files[spec["file"]], spec["constructor"])(**kwargs)


def make_fixture(code, spec: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """(config, {npz key: array}, state_dict) of one fixture.

    Args:
        code: the imported official files (:func:`benchmarks.official.load_official`).
        spec: one entry of :data:`FIXTURES`.
    """
    import torch

    torch.set_num_threads(1)
    weight_init = spec.get("weight_init", "normal")
    cfg = {k: v for k, v in spec.items() if k != "checkpoint"}
    cfg.update(
        official_repo=OFFICIAL_REPO,
        seed_input=spec["seed_weights"] + SEED_INPUT_OFFSET,
        weight_init=weight_init,
        weight_init_rule=WEIGHT_RULES[weight_init],
        input_init_rule=INPUT_RULE,
        compute=f"module.eval(), torch.no_grad(), float32, CPU, torch {torch.__version__}, 1 thread",
    )
    module = _build(code, spec)
    cfg["official_class"] = type(module).__name__
    seeded_state(module, spec["seed_weights"], weight_init)
    module.eval()
    x = torch.randn(spec["input_shape"], generator=torch.Generator().manual_seed(cfg["seed_input"]))

    debug: Dict[str, Any] = {}
    named = dict(module.named_modules())
    hooks = [
        named[name].register_forward_hook(lambda _m, _i, out, name=name: debug.__setitem__(name, out.detach().clone()))
        for name in spec["debug_modules"]
    ]
    with torch.no_grad():
        y = module(x, **spec.get("forward_kwargs", {}))
    for h in hooks:
        h.remove()
    cfg["output_shape"] = list(y.shape)

    state = module.state_dict()
    arrays: Dict[str, Any] = {f"param/{k}": v.numpy() for k, v in state.items()}
    arrays["input"] = x.numpy()
    arrays["output"] = y.numpy()
    arrays.update({f"debug/{name}": debug[name].numpy() for name in spec["debug_modules"]})
    return cfg, arrays, state


# ---------------------------------------------------------------------------------------------- writing


def write_npz(path: Path, arrays: Dict[str, Any], cfg: Dict[str, Any]) -> None:
    """An ``np.load``-able .npz (no pickle) whose bytes depend on the arrays only: fixed entry timestamps.

    Args:
        path: output file.
        arrays: entries in order; ``config_json`` (sorted-key JSON, a 0-d unicode array) is added last.
        cfg: the configuration.
    """
    import numpy as np

    entries = dict(arrays)
    entries["config_json"] = np.array(json.dumps(cfg, sort_keys=True))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in entries.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def compare(new: Path, ref: Path) -> Tuple[bool, str]:
    """Whether two fixture files agree (keys, shapes, dtypes, values within 1e-5), and a one-line account.

    Args:
        new: the regenerated file.
        ref: the file to compare with.
    """
    import numpy as np

    if not ref.is_file():
        return False, f"{ref} does not exist"
    if new.read_bytes() == ref.read_bytes():
        return True, "identical bytes"
    if new.suffix == ".pth":
        import torch

        a = torch.load(new, weights_only=True)["model"]
        b = torch.load(ref, weights_only=True)["model"]
        za = {k: v.numpy() for k, v in a.items()}
        zb = {k: v.numpy() for k, v in b.items()}
    else:
        za, zb = dict(np.load(new)), dict(np.load(ref))
    if list(za) != list(zb):
        return False, f"keys differ: only new {sorted(set(za) - set(zb))}, only reference {sorted(set(zb) - set(za))}"
    problems, diffs = [], {}
    for key in za:
        a, b = za[key], zb[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{key}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
        elif a.dtype.kind in "fiu":
            diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0
            if diff > 0:
                diffs[key] = diff
        elif a.item() != b.item():
            problems.append(f"{key} differs")
    computed = ("output", "debug/")  # what float32 kernels compute; everything else is drawn or recorded
    drawn = [k for k in diffs if not k.startswith(computed)]
    if drawn:
        problems.append(f"seeded or recorded values differ: {', '.join(drawn[:5])}")
    worst = max(diffs, key=diffs.get, default=None)
    if worst is not None and diffs[worst] > 1e-5:
        problems.append(f"max abs diff {diffs[worst]:.3e} at {worst}")
    if problems:
        return False, "; ".join(problems)
    if worst is None:
        return True, "equal arrays (the zip bytes differ)"
    return True, (
        f"parameters, input and config equal; {len(diffs)} computed array(s) differ, "
        f"by at most {diffs[worst]:.3e} ({worst})"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, required=True, help="checkout of the official ACmix repository")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the fixture files into")
    parser.add_argument("--force", action="store_true", help="replace files that already exist in --out")
    parser.add_argument("--only", default=None, help="comma-separated fixture names (default: all)")
    parser.add_argument("--compare", type=Path, default=None, help="compare each written file with the one here")
    args = parser.parse_args(argv)

    names = [s["name"] for s in FIXTURES]
    chosen = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in names]
    if unknown or not chosen:
        parser.error(f"unknown fixture(s) {unknown}; choose from {', '.join(names)}")
    specs = [s for s in FIXTURES if s["name"] in chosen]
    targets = [
        args.out / f"{s['name']}{ext}"
        for s in specs
        for ext in (".npz", ".pth")
        if ext == ".npz" or s.get("checkpoint")
    ]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.force:
        parser.error(f"would replace {', '.join(existing)}; pass --force to do so")
    try:
        code = load_official(args.official)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import torch

    commit = checkout_commit(code.root)
    print(f"official code: {code.root} (commit {commit or 'unknown: not a git checkout'}), torch {torch.__version__}")
    args.out.mkdir(parents=True, exist_ok=True)
    ok_all = True
    for spec in specs:
        cfg, arrays, state = make_fixture(code, spec)
        written = [args.out / f"{spec['name']}.npz"]
        write_npz(written[0], arrays, cfg)
        if spec.get("checkpoint"):
            written.append(args.out / f"{spec['name']}.pth")
            torch.save({"model": state}, written[-1])
        for path in written:
            line = f"{path.name}: written"
            if args.compare is not None:
                ok, how = compare(path, args.compare / path.name)
                ok_all &= ok
                line += f"; against {args.compare / path.name}: {'OK' if ok else 'MISMATCH'}, {how}"
            print(line)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
