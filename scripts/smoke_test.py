"""The first thing to run on a new host: the whole pipeline on the bundled digits, plus one ACmix-ResNet-50 and one
ACmix-Swin-T train step at 224, in the device's default mode; prints one table (and writes it as JSON) to paste
into a bug report.

    python scripts/smoke_test.py --device_target Ascend     # or GPU, CPU; usually through run_smoke_test.sh

Default mode per device: on Ascend and GPU, data sinking and fp16 (``amp_level O2`` with dynamic loss scaling, as
the ImageNet recipes use there); on CPU, the plain loop in float32.  Each step runs the project's own entry point
(``train.py``, ``eval.py``, ``export.py``) or, for the 224 train steps, a fresh process, exactly as a user would;
a failing step is reported with its last error line and the rest still run.  Exit code: 0 if every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
DEMO = "config/demo_digits.yaml"
RECIPES = {
    "acmix_resnet50": "config/acmix_resnet50_imagenet.yaml",
    "acmix_swin_tiny": "config/acmix_swin_tiny_imagenet.yaml",
}


def _run(args: List[str], timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _json(path: Path) -> Dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _last_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else f"exit code {proc.returncode}"


def step_time(model: str, device: str, batch: int, steps: int) -> Dict[str, float]:
    """Build the recipe's train step of ``model`` at 224 (its amp level and loss scale on ``device``), compile it
    with one step, time ``steps`` more; runs in the calling process (the driver starts a fresh one per model).

    Args:
        model: registry name with a recipe in ``RECIPES``.
        device: "CPU", "GPU" or "Ascend".
        batch: images per step.
        steps: timed steps after the compiling one.
    """
    sys.path.insert(0, str(ROOT))
    import mindspore as ms
    import numpy as np

    from src.config import parse_config
    from src.env import init_env
    from src.trainer import build_network, build_train_step

    cfg = parse_config(["--config", RECIPES[model], "--device_target", device, "--batch_size", str(batch)])
    init_env(cfg.device_target, cfg.mode, cfg.seed, graph_kernel=cfg.graph_kernel)
    train_step, _ = build_train_step(cfg, build_network(cfg), steps_per_epoch=steps + 1)
    train_step.set_train(True)
    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.standard_normal((batch, 3, cfg.img_size, cfg.img_size), dtype=np.float32))
    labels = ms.Tensor(rng.integers(0, cfg.num_classes, batch).astype(np.int32))
    t0 = time.perf_counter()
    loss = train_step(images, labels)[0].asnumpy()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        out = train_step(images, labels)
    loss = float(out[0].asnumpy())  # one synchronisation after the timed steps
    seconds = time.perf_counter() - t0
    if not np.isfinite(loss):
        raise RuntimeError(f"loss is {loss}")
    return {"amp_level": cfg.amp_level, "compile_s": compile_s, "images_per_sec": batch * steps / seconds, "loss": loss}


def smoke(device: str, out: Path, batch: int, steps: int) -> List[Dict]:
    """Run every step; returns one row per step (name, ok, seconds, detail)."""
    rows: List[Dict] = []
    accelerator = device != "CPU"
    demo_out = out / "demo"
    train_flags = ["--device_target", device, "--output_dir", str(demo_out), "--force", "--epochs", "1"]
    if accelerator:  # what the ImageNet recipes run there: fp16 with dynamic loss scaling, data sinking (auto)
        train_flags += ["--amp_level", "O2", "--loss_scale_type", "dynamic"]

    def add(name: str, args: List[str], timeout: int, detail=lambda: "") -> bool:
        t0 = time.perf_counter()
        try:
            proc = _run(args, timeout)
            ok = proc.returncode == 0
            text = detail() if ok else _last_error(proc)
        except subprocess.TimeoutExpired:
            ok, text = False, f"no result after {timeout} s"
        except Exception as exc:  # a step's result that cannot be read is that step's failure, not the driver's
            ok, text = False, f"{type(exc).__name__}: {exc}"
        rows.append({"step": name, "ok": ok, "seconds": round(time.perf_counter() - t0, 1), "detail": text})
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {text}", flush=True)
        return ok

    def metrics(kind: str) -> Dict:
        records = [json.loads(ln) for ln in (demo_out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        return [r for r in records if r["kind"] == kind][-1]

    add("prepare demo data", ["scripts/prepare_demo_data.py", "--out", str(out / "digits")], 300)
    data = ["--data_dir", str(out / "digits")]
    trained = add(
        "train (1 epoch of the demo)",
        ["train.py", "--config", DEMO, *data, *train_flags],
        1800,
        lambda: f"top-1 {metrics('val')['top1']:.2f}%, {metrics('train')['images_per_sec']:.1f} img/s",
    )
    ckpt = str(demo_out / "acmix_resnet26_epoch1.ckpt")
    common = ["--config", str(demo_out / "config.yaml"), "--device_target", device, "--output_dir", str(demo_out)]
    if trained:
        add(
            "eval.py on the checkpoint",
            ["eval.py", *common, *data, "--checkpoint", ckpt],
            900,
            lambda: "top-1 {top1:.2f}%, {images_per_sec:.1f} img/s".format(
                **json.loads((demo_out / "eval.json").read_text())
            ),
        )
        formats = ["MINDIR", "AIR"] if device == "Ascend" else ["MINDIR"]
        for fmt in formats:
            add(f"export.py {fmt}", ["export.py", *common, "--checkpoint", ckpt, "--file_format", fmt, "--force"], 900,
                lambda: "written and verified")  # fmt: skip
        mindir = next(iter(sorted(demo_out.glob("*.mindir"))), None)
        if mindir is not None:
            samples = ",".join(str(p) for p in sorted((out / "digits" / "val" / "3").glob("*.png"))[:3])
            predict = ["eval.py", *common, "--checkpoint", str(mindir), "--predict", samples]
            add("eval.py --predict on the MindIR", predict, 900, lambda: "3 images classified")
    for model in RECIPES:
        result_file = out / f"{model}_step.json"
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); from scripts.smoke_test import step_time; "
            "json.dump(step_time(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])), open(sys.argv[6], 'w'))"
        )
        add(
            f"{model} train step at 224, batch {batch}",
            ["-c", code, str(ROOT), model, device, str(batch), str(steps), str(result_file)],
            1800,
            lambda f=result_file: "{amp_level}, {images_per_sec:.1f} img/s, compile {compile_s:.0f} s".format(
                **_json(f)
            ),
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device_target", default="CPU", choices=["CPU", "GPU", "Ascend"])
    parser.add_argument("--output_dir", default="", help="default outputs/smoke_<DEVICE_TARGET>")
    parser.add_argument("--batch", type=int, default=0, help="images per 224 train step (default: 4 on CPU, 32 else)")
    parser.add_argument("--steps", type=int, default=2, help="timed 224 train steps after the compiling one")
    parser.add_argument("--json", default="", help="default <output_dir>/smoke.json")
    args = parser.parse_args(argv)
    if args.batch < 0 or args.steps < 1:
        parser.error("--batch must be >= 0 and --steps >= 1")
    device = args.device_target
    out = Path(args.output_dir or ROOT / "outputs" / f"smoke_{device}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    batch = args.batch or (4 if device == "CPU" else 32)

    import mindspore as ms

    host = {"device_target": device, "mindspore": ms.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count()}  # fmt: skip
    print(f"smoke test on {device}: mindspore {host['mindspore']}, python {host['python']}, output {out}", flush=True)
    t0 = time.perf_counter()
    rows = smoke(device, out, batch, args.steps)
    passed = sum(r["ok"] for r in rows)
    print("\n| step | result | seconds | detail |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['step']} | {'ok' if r['ok'] else 'FAIL'} | {r['seconds']:.1f} | {r['detail']} |")
    print(f"\n{passed} passed, {len(rows) - passed} failed in {time.perf_counter() - t0:.0f} s on {device}")
    path = Path(args.json) if args.json else out / "smoke.json"
    path.write_text(json.dumps({"host": host, "results": rows}, indent=1) + "\n", encoding="utf-8")
    print(f"JSON: {path}")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
