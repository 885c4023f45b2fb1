"""Peak memory and time of one ACmix module: blocked attention against the official unfold formulation.

Each case runs in a fresh process (MindSpore's memory pool keeps what a process
once took): build, compile, reset the peak-RSS counter (/proc/self/clear_refs),
run once and read VmHWM - VmRSS-before as the peak increase, then time
``--repeat`` further runs and report the median.

    python benchmarks/acmix_memory.py                      # 64->64 channels, 56x56, batch 8
    python benchmarks/acmix_memory.py --batch 2 --size 28  # quicker

Prints a table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status(field: str) -> float:
    """A /proc/self/status field in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def run_case(impl: str, mode: str, batch: int, channels: int, size: int, repeat: int) -> dict:
    """Measure one case in this process (called in a child process)."""
    sys.path.insert(0, str(ROOT))
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from src.models.layers import ACmix

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    net = ACmix(channels, channels, attn_impl=impl)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((batch, channels, size, size)).astype(np.float32))

    if mode == "forward":
        net.set_train(False)
        cell = net
    else:
        net.set_train(True)

        class Step(nn.Cell):
            def __init__(self) -> None:
                super().__init__()
                self.grad = ms.value_and_grad(self.loss, None, net.trainable_params())

            def loss(self, inp):
                return (net(inp) ** 2).mean()

            def construct(self, inp):
                return self.grad(inp)

        cell = Step()

    t0 = time.perf_counter()
    cell.compile(x)
    compile_s = time.perf_counter() - t0

    def once() -> None:
        out = cell(x)
        (out[0] if isinstance(out, tuple) else out).asnumpy()

    rss0 = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    once()
    peak = _status("VmHWM") - rss0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "impl": impl,
        "mode": mode,
        "peak_mib": round(peak, 1),
        "median_s": round(times[len(times) // 2], 4),
        "compile_s": round(compile_s, 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "acmix_memory.json")
    parser.add_argument("--case", nargs=2, metavar=("IMPL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.batch, args.channels, args.size, args.repeat) < 1 or args.channels % 4:
        parser.error("batch, size, repeat must be >= 1 and channels a positive multiple of 4 (4 heads)")

    if args.case:  # child process
        print(json.dumps(run_case(*args.case, args.batch, args.channels, args.size, args.repeat)))
        return 0

    results = []
    for mode in ("forward", "forward+backward"):
        for impl in ("unfold", "blocked"):
            cmd = [sys.executable, __file__, "--case", impl, mode]
            cmd += ["--batch", str(args.batch), "--channels", str(args.channels), "--size", str(args.size)]
            cmd += ["--repeat", str(args.repeat)]
            env = dict(os.environ, GLOG_v="3")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout + proc.stderr)
                return proc.returncode
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    shape = (
        f"ACmix {args.channels}->{args.channels}, {args.size}x{args.size}, batch {args.batch}, fp32, graph mode, CPU"
    )
    print(shape)
    cols = ("peak MiB", "median s", "compile s", "mem ratio", "time ratio")
    print(f"{'case':<18} {'impl':<8} " + " ".join(f"{c:>{max(9, len(c))}}" for c in cols))
    for mode in ("forward", "forward+backward"):
        base = next(r for r in results if r["mode"] == mode and r["impl"] == "unfold")
        for r in (x for x in results if x["mode"] == mode):
            r["mem_ratio"] = round(r["peak_mib"] / base["peak_mib"], 3)
            r["time_ratio"] = round(r["median_s"] / base["median_s"], 3)
            print(
                f"{mode:<18} {r['impl']:<8} {r['peak_mib']:>9.0f} {r['median_s']:>9.3f} {r['compile_s']:>10.1f}"
                f" {r['mem_ratio']:>10.2f} {r['time_ratio']:>10.2f}"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"setting": shape, "results": results}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
