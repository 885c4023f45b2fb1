"""The FLOPs counter: parameters and multiply-adds of every registered model, next to the paper's figures.

Builds each model, counts its parameters and multiply-adds from its structure (src/models/flops.py), and
(unless --no_run) runs one forward pass for the output shape and a time.

python scripts/model_summary.py                       # every model, 224x224, batch 1
python scripts/model_summary.py --model acmix_resnet26 --size 64
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import mindspore as ms
    import numpy as np

    from src.env import init_env
    from src.models import create_model, get_model_config, list_models
    from src.models.flops import count_macs, count_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="registry name (repeatable); default: all")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--device", default="CPU", choices=["CPU", "GPU", "Ascend"])
    parser.add_argument("--no_run", action="store_true", help="count only, do not run a forward pass")
    args = parser.parse_args(argv)
    names = args.model or list_models()
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; registered: {', '.join(list_models())}")
    if args.size < 1 or args.batch < 1:
        parser.error("--size and --batch must be >= 1")

    init_env(args.device, "graph", seed=0)
    header = f"{'model':<16} {'params':>12} {'official':>12} {'paper':>7} {'vs paper':>8} {'GMACs':>7} {'paper':>6}"
    header += f" {'vs paper':>8}"
    header += f" {'input':>18} {'output':>12} {'first s':>8} {'fwd s':>7}"
    print(header)
    print("-" * len(header))
    x = ms.Tensor(np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32))
    for name in names:
        net = create_model(name, num_classes=args.num_classes)
        net.set_train(False)
        n_params = count_params(net)
        gmacs = count_macs(net, tuple(x.shape)) / args.batch / 1e9
        out_shape, first, fwd = "-", float("nan"), float("nan")
        if not args.no_run:
            t0 = time.perf_counter()
            out_shape = str(net(x).asnumpy().shape)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            net(x).asnumpy()
            fwd = time.perf_counter() - t0
        ref = get_model_config(name)
        official = f"{ref.params_official:,}" if ref.params_official else "-"
        paper = f"{ref.params_paper / 1e6:.1f}M" if ref.params_paper else "-"
        paper_flops = f"{ref.flops_paper / 1e9:.1f}G" if ref.flops_paper else "-"
        d_params = (
            f"{100 * (n_params / ref.params_paper - 1):+.1f}%" if ref.params_paper and args.num_classes == 1000 else "-"
        )
        d_flops = f"{100 * (gmacs * 1e9 / ref.flops_paper - 1):+.1f}%" if ref.flops_paper and args.size == 224 else "-"
        print(
            f"{name:<16} {n_params:>12,} {official:>12} {paper:>7} {d_params:>8} {gmacs:>7.3f} {paper_flops:>6}"
            f" {d_flops:>8} {str(tuple(x.shape)):>18} {out_shape:>12} {first:>8.1f} {fwd:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
