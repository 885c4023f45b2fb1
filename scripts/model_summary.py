"""Build registered models and print their parameters, multiply-adds and output shape (and a forward time).

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

# Reference figures from DESIGN.md section 2 (1000 classes, 224x224): the official
# code's exact parameter counts where it exists, and the paper's rounded figures.
REFERENCE = {
    "acmix_resnet26": {"official": 10_487_816, "paper": "10.6M", "paper_flops": "2.3G"},
    "acmix_resnet38": {"official": 14_410_896, "paper": "14.6M", "paper_flops": "2.9G"},
    "acmix_resnet50": {"official": 18_333_976, "paper": "18.6M", "paper_flops": "3.6G"},
    "acmix_swin_tiny": {"official": 28_649_908, "paper": "30M", "paper_flops": "4.6G"},
    "acmix_swin_small": {"official": 50_345_080, "paper": "51M", "paper_flops": "9.0G"},
}


def main(argv=None) -> int:
    import mindspore as ms
    import numpy as np

    from src.models import create_model, list_models
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

    ms.set_context(mode=ms.GRAPH_MODE, device_target=args.device)
    header = f"{'model':<16} {'params':>12} {'official':>12} {'paper':>7} {'GMACs':>7} {'paper':>6}"
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
        ref = REFERENCE.get(name, {})
        official = f"{ref['official']:,}" if "official" in ref else "-"
        print(
            f"{name:<16} {n_params:>12,} {official:>12} {ref.get('paper', '-'):>7} {gmacs:>7.3f}"
            f" {ref.get('paper_flops', '-'):>6} {str(tuple(x.shape)):>18} {out_shape:>12} {first:>8.1f} {fwd:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
