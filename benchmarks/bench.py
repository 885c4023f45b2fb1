"""Time and peak memory of ACmix in MindSpore: against the official PyTorch code, and blocked against unfold.

The one benchmark tool of this repository.  Every (case, implementation) pair runs in a fresh process, so the
peak memory of one case is not hidden by what an earlier case left in a memory pool.  In each process:

1. build the model and the inputs (fixed seeds) and read the resident set size (VmRSS);
2. MindSpore only: compile the graph (``Cell.compile``) and report its time and memory separately;
3. reset the peak-RSS counter (``/proc/self/clear_refs``), run one warm-up call and ``--repeat`` timed calls.

Peak memory, the only definition used here, is a peak RSS increase (VmHWM minus a baseline VmRSS), in MiB:

- ``peak_mib``: over the RSS after step 1, compilation included.  MindSpore's CPU backend keeps memory from
  compilation on (e.g. an index table per Transpose kernel, sized by its output), so leaving compilation out
  would hide part of what a run needs.  This is the column compared with the official code.
- ``run_peak_mib``: over the RSS after step 2, i.e. what the calls themselves add to the compiled state.

For PyTorch, which compiles nothing, the two are the same.  The model and, in MindSpore, the optimizer's
momentum are in the baseline; activations, gradients, workspaces and PyTorch's lazily created gradient and
momentum buffers are not.  Times are medians of the timed calls; images/second = batch / median time.
Ratios are computed from medians and peaks measured in the same run.

Cases (``--cases``): ``module_*`` is one ACmix cell 64->64 at 56x56 with the default blocked sliding-window
attention, ``module_unfold_*`` the same cell with ``attn_impl="unfold"`` (the official formulation, kept as
the reference); when both of a pair run, a second table gives blocked / unfold.  The other cases are whole
registered models at 224x224.  Forward cases run in eval mode (PyTorch under ``torch.no_grad()``); the
module's forward+backward case takes the gradient of ``mean(out ** 2)`` with respect to the parameters; the
model train-step cases are one SGD step (learning rate 1e-3, momentum 0.9, cross entropy on random labels) in
train mode, in MindSpore a ``TrainOneStepCell`` compiled once in graph mode.  PyTorch runs with
``torch.set_num_threads(2)``.

    python benchmarks/bench.py                                   # MindSpore only, every case
    python benchmarks/bench.py --official /tmp/acmix_official     # and the official code, case by case
    python benchmarks/bench.py --cases module_fwd,module_unfold_fwd --batch 2 --size 28 --repeat 3
    python benchmarks/bench.py --cases module_fwd,resnet50_fwd --repeat 3 --json out.json
    python benchmarks/bench.py --mixed_precision                 # adds the train steps under amp O2
    python benchmarks/bench.py --cases resnet50_train --compile_profile  # where the compilation time goes

``--official`` is a checkout of https://github.com/LeapLabTHU/ACmix (``git archive HEAD | tar -x -C DIR``),
imported at run time by ``benchmarks/official.py``; it needs what ``requirements-bench.txt`` installs.
Prints markdown tables and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.official import load_official, official_usable  # noqa: E402

MIB = 1024.0
LR = 1e-3
MOMENTUM = 0.9
TORCH_THREADS = 2
MODULE_CHANNELS = 64


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    Args:
        name: the name used by ``--cases``.
        model: ``"module"`` (one ACmix cell) or a registry name.
        train: backward pass (module) or one SGD step (models) instead of an eval forward.
        size: default input height and width.
        official: which official code builds the counterpart (``module``, ``resnet50``, ``swin_tiny``) or None.
        attn_impl: the module's ``attn_impl`` (``"blocked"`` or ``"unfold"``); None for whole models.
        baseline: the case that this one is divided by in the blocked / unfold table, or None.
    """

    name: str
    model: str
    train: bool
    size: int
    official: Optional[str]
    attn_impl: Optional[str] = None
    baseline: Optional[str] = None


CASES: Dict[str, Case] = {
    c.name: c
    for c in (
        Case("module_fwd", "module", False, 56, "module", "blocked", "module_unfold_fwd"),
        Case("module_fwdbwd", "module", True, 56, "module", "blocked", "module_unfold_fwdbwd"),
        # the official counterpart of the unfold cases is the same as above: measured once, with module_fwd*
        Case("module_unfold_fwd", "module", False, 56, None, "unfold"),
        Case("module_unfold_fwdbwd", "module", True, 56, None, "unfold"),
        Case("resnet50_fwd", "acmix_resnet50", False, 224, "resnet50"),
        Case("resnet50_train", "acmix_resnet50", True, 224, "resnet50"),
        Case("swin_tiny_fwd", "acmix_swin_tiny", False, 224, "swin_tiny"),
        Case("swin_tiny_train", "acmix_swin_tiny", True, 224, "swin_tiny"),
        Case("pvt_tiny_fwd", "acmix_pvt_tiny", False, 224, None),
        Case("pvt_tiny_train", "acmix_pvt_tiny", True, 224, None),
        Case("san10_fwd", "acmix_san10", False, 224, None),
        Case("san10_train", "acmix_san10", True, 224, None),
    )
}
IMPLS = ("mindspore", "official", "mindspore_o2")


# ----------------------------------------------------------------------------------------------- measuring


def _status_mib(field: str) -> float:
    """A field of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / MIB
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def _reset_peak() -> float:
    """Reset VmHWM to the current RSS; returns that RSS in MiB."""
    rss = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss


def _measure(run: Callable[[], None], repeat: int) -> Dict[str, Any]:
    """Warm-up call then ``repeat`` timed calls; peak RSS increase over the RSS just before them."""
    rss0 = _reset_peak()
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {
        "run_peak_mib": round(_status_mib("VmHWM") - rss0, 1),
        "first_call_s": round(first, 4),
        "times_s": [round(t, 4) for t in times],
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
    }


def _inputs(case: Case, batch: int, size: int) -> Tuple[Any, Any]:
    """Seeded float32 images (or feature maps) and int32 labels as numpy arrays."""
    import numpy as np

    rng = np.random.default_rng(0)
    channels = MODULE_CHANNELS if case.model == "module" else 3
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    y = rng.integers(0, 1000, size=(batch,)).astype(np.int32)
    return x, y


def _ms_model(case: Case, size: int):
    """The MindSpore network of a case."""
    from src.models import create_model
    from src.models.layers import ACmix

    if case.model == "module":
        return ACmix(MODULE_CHANNELS, MODULE_CHANNELS, attn_impl=case.attn_impl or "blocked")
    try:
        return create_model(case.model, num_classes=1000, img_size=size)
    except TypeError as exc:  # convolutional hosts take any size and no img_size
        if "img_size" not in str(exc):
            raise
    return create_model(case.model, num_classes=1000)


def run_mindspore(
    case: Case,
    batch: int,
    size: int,
    repeat: int,
    amp_dtype: Optional[str] = None,
    graph_kernel: str = "auto",
    compile_profile: bool = False,
) -> Dict[str, Any]:
    """Measure one case with this package in MindSpore graph mode (in the calling process).

    Args:
        case: the case.
        batch: batch size.
        size: input height and width.
        repeat: timed calls after the warm-up.
        amp_dtype: None (fp32) or ``"float16"``/``"bfloat16"`` for ``auto_mixed_precision(net, "O2")``.
        graph_kernel: "auto", "on" or "off", as the ``graph_kernel`` key of the training config.
        compile_profile: make MindSpore print the time of each compilation phase (read by ``compile_phases``).
    """
    import mindspore as ms
    from mindspore import nn

    if compile_profile:  # MindSpore's own switch for its phase timer; no public API exposes it
        from mindspore._extends.parse import compile_config

        compile_config.COMPILE_PROFILE = "1"

    from src.env import init_env

    init_env("CPU", "graph", 0, graph_kernel=graph_kernel)
    x_np, y_np = _inputs(case, batch, size)
    net = _ms_model(case, size)
    if amp_dtype is not None:
        net = ms.amp.auto_mixed_precision(net, "O2", dtype=getattr(ms, amp_dtype))
    x, y = ms.Tensor(x_np), ms.Tensor(y_np)

    if not case.train:
        net.set_train(False)
        cell, args = net, (x,)
    elif case.model == "module":
        params = net.trainable_params()

        class GradStep(nn.Cell):
            def __init__(self) -> None:
                super().__init__()
                self.net = net
                self.grad = ms.value_and_grad(self.loss, None, params)

            def loss(self, inp):
                return (self.net(inp).astype(ms.float32) ** 2).mean()

            def construct(self, inp):
                return self.grad(inp)  # every gradient is an output, so none is pruned

        cell, args = GradStep(), (x,)
        cell.set_train(True)
    else:
        opt = nn.SGD(net.trainable_params(), learning_rate=LR, momentum=MOMENTUM)
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, nn.CrossEntropyLoss()), opt)
        cell.set_train(True)
        args = (x, y)

    rss_build = _reset_peak()
    t0 = time.perf_counter()
    cell.compile(*args)
    compile_s = time.perf_counter() - t0
    compile_peak = _status_mib("VmHWM") - rss_build
    compile_kept = _status_mib("VmRSS") - rss_build

    def once() -> None:
        out = cell(*args)
        (out[0] if isinstance(out, tuple) else out).asnumpy()

    res = _measure(once, repeat)
    res.update(
        peak_mib=round(max(compile_peak, compile_kept + res["run_peak_mib"]), 1),
        compile_s=round(compile_s, 2),
        compile_peak_mib=round(compile_peak, 1),
        compile_kept_mib=round(compile_kept, 1),
        framework=f"mindspore {ms.__version__}",
        precision=amp_dtype or "float32",
        graph_kernel=bool(ms.get_context("enable_graph_kernel")),  # what init_env set, not a second derivation
    )
    if case.attn_impl is not None:
        res["attn_impl"] = case.attn_impl
    return res


# ----------------------------------------------------------------------------------- the official code


def _official_model(case: Case, size: int, root: Path):
    """The official PyTorch network of a case, imported from the checkout ``root``."""
    code = load_official(root)
    if case.official == "module":
        return code.acmix.ACmix(MODULE_CHANNELS, MODULE_CHANNELS)
    if case.official == "resnet50":
        return code.resnet.ACmix_ResNet(layers=[3, 4, 6, 3], num_classes=1000)
    if case.official == "swin_tiny":
        # the official acmix_swin_tiny config: embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7, drop path 0.2
        return code.swin.SwinTransformer_acmix(img_size=size, num_classes=1000, drop_path_rate=0.2)
    raise ValueError(f"case {case.name} has no official counterpart")


def run_official(
    case: Case, batch: int, size: int, repeat: int, root: Path, threads: int = TORCH_THREADS
) -> Dict[str, Any]:
    """Measure one case with the official PyTorch code (in the calling process).

    Args:
        case: the case (``case.official`` must be set).
        batch: batch size.
        size: input height and width.
        repeat: timed calls after the warm-up.
        root: checkout of the official repository.
        threads: ``torch.set_num_threads``.
    """
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x_np, y_np = _inputs(case, batch, size)
    net = _official_model(case, size, root)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np).long()

    if not case.train:
        net.eval()

        def once() -> None:
            with torch.no_grad():
                net(x)

    elif case.model == "module":
        net.train()

        def once() -> None:
            net.zero_grad(set_to_none=True)
            (net(x) ** 2).mean().backward()

    else:
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
        loss_fn = torch.nn.CrossEntropyLoss()

        def once() -> None:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            loss.item()

    res = _measure(once, repeat)
    res.update(
        peak_mib=res["run_peak_mib"], compile_s=None, framework=f"torch {torch.__version__}", precision="float32"
    )
    return res


# ------------------------------------------------------------------------------------------- the driver


def _child(args: argparse.Namespace) -> Dict[str, Any]:
    case_name, impl = args.child
    case = CASES[case_name]
    size = args.size or case.size
    if impl == "official":
        res = run_official(case, args.batch, size, args.repeat, Path(args.official), args.torch_threads)
    elif impl == "mindspore":
        res = run_mindspore(case, args.batch, size, args.repeat, None, args.graph_kernel, args.compile_profile)
    else:
        res = run_mindspore(case, args.batch, size, args.repeat, args.amp_dtype, args.graph_kernel)
    return res


def _run_child(case: Case, impl: str, args: argparse.Namespace, amp_dtype: str = "float16") -> Dict[str, Any]:
    """Run one (case, implementation) in a fresh interpreter; a failure becomes a result with an error."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case.name, impl]
    cmd += ["--batch", str(args.batch), "--repeat", str(args.repeat), "--amp_dtype", amp_dtype]
    cmd += ["--torch_threads", str(args.torch_threads), "--graph_kernel", args.graph_kernel]
    if args.compile_profile:
        cmd.append("--compile_profile")
    if args.size:
        cmd += ["--size", str(args.size)]
    if args.official:
        cmd += ["--official", str(args.official)]
    env = dict(
        os.environ, GLOG_v="3", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    head = {"case": case.name, "impl": impl, "batch": args.batch, "size": args.size or case.size}
    head["load_avg_1min"] = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="acmix_bench_") as cwd:  # graph-compile by-products land there
            # fused kernels: a cold cache of the process's own unless --kernel_cache names one to share
            env["MS_COMPILER_CACHE_PATH"] = str((args.kernel_cache or Path(cwd) / "kernels").resolve())
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**head, "status": "failed", "error": f"timed out after {args.timeout} s"}
    head["wall_s"] = round(time.perf_counter() - t0, 1)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
        key = [ln for ln in err if "Error" in ln or "error" in ln]
        code = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        if proc.returncode == -9:
            code += " (out of memory?)"
        error = " | ".join([code, *(key or err)[-3:]])[-600:]
        return {**head, "status": "failed", "returncode": proc.returncode, "error": error}
    res = json.loads(lines[-1])
    phases = compile_phases(proc.stdout)
    if phases:
        res["compile_phases_s"] = phases
    res["images_per_s"] = round(args.batch / res["median_s"], 2) if res["median_s"] > 0 else None
    return {**head, "status": "ok", **res}


def compile_phases(stdout: str) -> Dict[str, float]:
    """Seconds per top-level compilation phase from MindSpore's ``COMPILE_PROFILE`` output (its "Sums" block).

    The phases are summed by their first name: ``type_inference`` (abstract interpretation of the Python graph),
    ``optimize`` (the front-end passes: inlining, gradient expansion, simplification) and ``task_emit`` (the
    back end: kernel graph, graph-kernel fusion, kernel selection and generation); the rest is ``other``.  Of
    several graphs compiled in one process, the longest is kept.

    Args:
        stdout: what the measuring process printed.
    """
    blocks: List[Dict[str, float]] = []
    current: Optional[Dict[str, float]] = None
    for line in stdout.splitlines():
        if line.strip() == "Sums":  # "    name.sub : 1.234s : 5.6%" lines follow, up to a blank line
            current = {}
            blocks.append(current)
            continue
        if current is None:
            continue
        parts = [p.strip() for p in line.split(":")]
        if len(parts) != 3 or not parts[1].endswith("s"):
            current = None
            continue
        seconds = float(parts[1][:-1])
        head = parts[0].split(".")[0]
        key = head if head in ("type_inference", "optimize", "task_emit") else "other"
        current[key] = current.get(key, 0.0) + seconds
    if not blocks:
        return {}
    best = max(blocks, key=lambda b: sum(b.values()))
    return {k: round(v, 1) for k, v in sorted(best.items())}


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return round(a / b, 3) if a is not None and b else None


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _get(rows: List[Dict[str, Any]], case: str, impl: str) -> Optional[Dict[str, Any]]:
    return next((r for r in rows if r["case"] == case and r["impl"] == impl), None)


def _val(r: Optional[Dict[str, Any]], key: str) -> Optional[float]:
    return r.get(key) if r and r.get("status") == "ok" else None


def summarize(rows: List[Dict[str, Any]], cases: Sequence[Case]) -> Tuple[List[Dict[str, Any]], str]:
    """Per-case comparison (MindSpore / official; ``mem_ratio`` from ``peak_mib``) and the markdown tables.

    Args:
        rows: results of every run.
        cases: the cases, in order.
    """

    comparison, out = [], []
    out.append(
        "| case | batch | size | MS compile s | MS median s | official median s | time ratio | MS peak_mib "
        "| MS run_peak_mib | official peak_mib | mem ratio | MS img/s | official img/s |"
    )
    out.append("|" + "---|" * 13)
    for case in cases:
        ms_r, of_r = _get(rows, case.name, "mindspore"), _get(rows, case.name, "official")
        if ms_r is None:
            continue
        item = {
            "case": case.name,
            "time_ratio": _ratio(_val(ms_r, "median_s"), _val(of_r, "median_s")),
            "mem_ratio": _ratio(_val(ms_r, "peak_mib"), _val(of_r, "peak_mib")),
        }
        comparison.append(item)
        ms_med = _val(ms_r, "median_s") if ms_r["status"] == "ok" else "failed"
        of_med = "n/a" if of_r is None else (_val(of_r, "median_s") if of_r["status"] == "ok" else "failed")
        cells = [
            case.name,
            ms_r["batch"],
            ms_r["size"],
            _fmt(_val(ms_r, "compile_s"), 1),
            _fmt(ms_med, 3),
            _fmt(of_med, 3),
            _fmt(item["time_ratio"]),
            _fmt(_val(ms_r, "peak_mib"), 0),
            _fmt(_val(ms_r, "run_peak_mib"), 0),
            _fmt(_val(of_r, "peak_mib"), 0),
            _fmt(item["mem_ratio"]),
            _fmt(_val(ms_r, "images_per_s"), 1),
            _fmt(_val(of_r, "images_per_s"), 1),
        ]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")

    phased = [r for r in rows if r.get("compile_phases_s")]
    if phased:
        names = ("type_inference", "optimize", "task_emit", "other")
        out += ["", "| case | compile s | " + " | ".join(f"{n} s" for n in names) + " |", "|" + "---|" * 6]
        for r in phased:
            ph = r["compile_phases_s"]
            cells = [r["case"], _fmt(_val(r, "compile_s"), 1), *(_fmt(ph.get(n, 0.0), 1) for n in names)]
            out.append("| " + " | ".join(str(c) for c in cells) + " |")

    amp = [r for r in rows if r["impl"] == "mindspore_o2"]
    if amp:
        out += ["", "| case | amp O2 dtype | status | compile s | median s | fp32 median s | speed-up | peak_mib |"]
        out.append("|" + "---|" * 8)
        for r in amp:
            fp32 = _val(_get(rows, r["case"], "mindspore"), "median_s")
            status = "ok" if r["status"] == "ok" else f"failed: {r['error'][:160]}"
            if r.get("float16_error"):
                status = f"float16 failed: {r['float16_error'][:160]}; bfloat16 {status}"
            status = status.replace("|", "/")  # keep the markdown row intact
            cells = [
                r["case"],
                r.get("amp_dtype", "-"),
                status,
                _fmt(_val(r, "compile_s"), 1),
                _fmt(_val(r, "median_s"), 3),
                _fmt(fp32, 3),
                _fmt(_ratio(fp32, _val(r, "median_s"))),
                _fmt(_val(r, "peak_mib"), 0),
            ]
            out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return comparison, "\n".join(out)


def compare_attn_impls(rows: List[Dict[str, Any]], cases: Sequence[Case]) -> Tuple[List[Dict[str, Any]], str]:
    """Blocked / unfold ratios of the ACmix module, for every case whose baseline case ran too (same run).

    Args:
        rows: results of every run.
        cases: the cases, in order.
    """
    items, out = [], []
    for case in cases:
        new, base = _get(rows, case.name, "mindspore"), _get(rows, case.baseline or "", "mindspore")
        if new is None or base is None:
            continue
        items.append(
            {
                "case": case.name,
                "baseline": case.baseline,
                "time_ratio": _ratio(_val(new, "median_s"), _val(base, "median_s")),
                "mem_ratio": _ratio(_val(new, "peak_mib"), _val(base, "peak_mib")),
                "run_mem_ratio": _ratio(_val(new, "run_peak_mib"), _val(base, "run_peak_mib")),
            }
        )
        cells = [
            f"{case.name} / {case.baseline}",
            _fmt(_val(new, "median_s"), 3),
            _fmt(_val(base, "median_s"), 3),
            _fmt(items[-1]["time_ratio"]),
            _fmt(_val(new, "peak_mib"), 0),
            _fmt(_val(base, "peak_mib"), 0),
            _fmt(items[-1]["mem_ratio"]),
            _fmt(_val(new, "run_peak_mib"), 0),
            _fmt(_val(base, "run_peak_mib"), 0),
            _fmt(items[-1]["run_mem_ratio"]),
        ]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    if out:
        head = (
            "| blocked / unfold | median s | unfold median s | time ratio | peak_mib | unfold peak_mib | mem ratio "
            "| run_peak_mib | unfold run_peak_mib | run mem ratio |"
        )
        out = [head, "|" + "---|" * 10, *out]
    return items, "\n".join(out)


def _parse_cases(text: str) -> List[Case]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    return [CASES[n] for n in names]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, default=None, help="checkout of the official ACmix repository")
    parser.add_argument("--cases", type=_parse_cases, default=list(CASES.values()), help="comma-separated names")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls after one warm-up call")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=None, help="input size of every case (default: 56 / 224)")
    parser.add_argument("--mixed_precision", action="store_true", help="also run MindSpore train steps under amp O2")
    parser.add_argument("--torch_threads", type=int, default=TORCH_THREADS, help="torch.set_num_threads")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per (case, implementation) process")
    parser.add_argument(
        "--graph_kernel",
        default="auto",
        choices=("auto", "on", "off"),
        help="graph-kernel fusion, as the graph_kernel key of a recipe (auto: on for CPU)",
    )
    parser.add_argument(
        "--kernel_cache",
        type=Path,
        default=None,
        help="share this fused-kernel cache between cases and runs (default: every process compiles cold)",
    )
    parser.add_argument(
        "--compile_profile", action="store_true", help="add MindSpore's time per compilation phase (a second table)"
    )
    parser.add_argument("--child", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--amp_dtype", default="float16", choices=("float16", "bfloat16"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.batch, args.repeat, args.timeout, args.torch_threads) < 1 or (args.size is not None and args.size < 1):
        parser.error("batch, repeat, timeout and size must be >= 1")

    if args.child:
        if args.child[0] not in CASES or args.child[1] not in IMPLS:
            parser.error(f"bad --child {args.child}")
        print(json.dumps(_child(args)))
        return 0

    use_official, why = official_usable(args.official)
    if args.official is not None and not use_official:
        print(f"warning: not running the official code: {why}", file=sys.stderr)
    rows: List[Dict[str, Any]] = []
    for case in args.cases:
        plan = ["mindspore"]
        if use_official and case.official:
            plan.append("official")
        if args.mixed_precision and case.train:
            plan.append("mindspore_o2")
        for impl in plan:
            res = _run_child(case, impl, args)
            if impl == "mindspore_o2":
                res["amp_dtype"] = "float16"
                if res["status"] != "ok" and res.get("returncode", 1) > 0:  # fp16 refused (not killed): try bf16
                    alt = _run_child(case, impl, args, amp_dtype="bfloat16")
                    alt["amp_dtype"] = "bfloat16"
                    alt["float16_error"] = res.get("error")
                    res = alt
            rows.append(res)
            done = f"{res.get('median_s')} s, peak {res.get('peak_mib')} MiB" if res["status"] == "ok" else res["error"]
            print(f"[{case.name} / {impl}] {done}", file=sys.stderr, flush=True)

    comparison, table = summarize(rows, args.cases)
    impl_comparison, impl_table = compare_attn_impls(rows, args.cases)
    print(
        f"batch {args.batch}, fp32 unless noted, median of {args.repeat} calls after one warm-up, "
        f"torch threads {args.torch_threads}, CPU cores {os.cpu_count()}, MindSpore graph kernel {args.graph_kernel} "
        f"(kernel cache {args.kernel_cache or 'cold'}); ratios are MindSpore / official"
    )
    print(table)
    if impl_table:
        print("\nACmix module 64->64, blocked (default) against unfold (the official formulation), MindSpore:")
        print(impl_table)
    if args.json:
        setting = {
            "batch": args.batch,
            "size_override": args.size,
            "repeat": args.repeat,
            "torch_threads": args.torch_threads,
            "cpu_count": os.cpu_count(),
            "official": str(args.official) if use_official else None,
            "official_skipped_because": None if use_official or args.official is None else why,
            "mixed_precision": args.mixed_precision,
            "graph_kernel": args.graph_kernel,
            "kernel_cache": str(args.kernel_cache) if args.kernel_cache else "cold (one per process)",
            "compile_profile": args.compile_profile,
            "sgd": {"lr": LR, "momentum": MOMENTUM},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "setting": setting,
                    "results": rows,
                    "comparison": comparison,
                    "attn_impl_comparison": impl_comparison,
                },
                indent=2,
            )
        )
        print(f"wrote {args.json}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
