"""Unpack the bundled handwritten digits (data/digits.npz) into an ImageFolder of RGB PNGs.

Usage: python scripts/prepare_demo_data.py [--out data/digits] [--size 32]
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from src.data.demo import prepare_digits  # noqa: E402
from src.errors import DataError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "data", "digits"), help="output folder")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    args = parser.parse_args()
    if args.size < 8:
        parser.error("--size must be at least 8")
    try:
        counts = prepare_digits(args.out, args.size)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.out}: " + ", ".join(f"{split} {n} images" for split, n in counts.items()) + ", 10 classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
