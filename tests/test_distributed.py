"""Data parallelism through the real launcher: msrun with 2 CPU workers (the mccl backend) against one process."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

# A LayerNorm model without drop path: BatchNorm statistics (2 x 4 vs 1 x 8 images) and random drop-path masks
# differ between data parallelism and one process by design; LayerNorm does not.
MODEL = [
    "--model", "acmix_swin_tiny", "--img_size", "16", "--num_classes", "3", "--train_crop", "none",
    "--model_kwargs", "{patch_size: 2, window_size: 4, depths: [1, 1], num_heads: [2, 4], embed_dim: 16}",
    "--shuffle", "false", "--epochs", "1", "--num_workers", "1", "--log_interval", "1", "--seed", "3",
    "--drop_path_rate", "0.0",
]  # fmt: skip
# The launchers run $PYTHON and msrun from PATH: both from the interpreter running the tests (a venv that is not
# activated has its msrun only next to its python).
BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, GLOG_v="3", DEVICE_TARGET="CPU", CLUSTER_TIME_OUT="60", PYTHON=sys.executable)
ENV["PATH"] = BIN + os.pathsep + ENV.get("PATH", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """3 classes of the bundled digits: 8 training and 5 validation images each (5 x 3 = 15: uneven shards)."""
    z = np.load(ROOT / "data" / "digits.npz")
    root = tmp_path_factory.mktemp("digits3")
    for split, picks in (("train", slice(0, 8)), ("val", slice(8, 13))):
        for d in range(3):
            folder = root / split / f"digit{d}"
            folder.mkdir(parents=True)
            for j, idx in enumerate(np.flatnonzero(z["labels"] == d)[picks]):
                px = (z["images"][idx].astype(np.float32) * 255 / 16).astype(np.uint8)
                Image.fromarray(np.repeat(px[:, :, None], 3, 2)).resize((16, 16), Image.NEAREST).save(
                    folder / f"{j}.png"
                )
    return root


def _launch(data, out, logs, *extra):
    env = dict(ENV, MASTER_PORT=str(_free_port()), LOG_DIR=str(logs))
    cmd = ["bash", "scripts/run_distribute_train_gpu.sh", "config/demo_digits.yaml", str(data), "2", *MODEL]
    cmd += ["--batch_size", "4", "--output_dir", str(out), *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _digests(logs) -> list:
    found = []
    for name in ("worker_0.log", "worker_1.log"):
        text = (logs / name).read_text(errors="replace")
        found += re.findall(r"weights sha256 ([0-9a-f]{64})", text)
    return found


@pytest.mark.slow
def test_two_workers_equal_each_other_and_one_process(digits, tmp_path):
    from src.checkpoint import read_checkpoint
    from src.config import parse_config
    from src.trainer import train

    proc = _launch(digits, tmp_path / "dp", tmp_path / "logs")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    digests = _digests(tmp_path / "logs")
    assert len(digests) == 2 and digests[0] == digests[1], digests  # (a) both ranks hold the same weights
    log0 = (tmp_path / "logs" / "worker_0.log").read_text(errors="replace")
    assert "batch 4 per device x 2 device(s) = 8" in log0
    assert not (tmp_path / "dp" / "train_rank1.log").read_text().count("saved")  # only rank 0 writes checkpoints

    # (b) one process over the same global batches (8 images; the shards interleave, so batch t is the union)
    single = parse_config(
        ["--config", "config/demo_digits.yaml", *MODEL, "--data_dir", str(digits), "--batch_size", "8",
         "--output_dir", str(tmp_path / "single")]
    )  # fmt: skip
    result = train(single)
    dp, _ = read_checkpoint(str(tmp_path / "dp" / "acmix_swin_tiny_epoch1.ckpt"))
    sp, _ = read_checkpoint(str(tmp_path / "single" / "acmix_swin_tiny_epoch1.ckpt"))
    assert set(dp) == set(sp)
    # Summation order differs (two half-batch gradients averaged vs one batch); AdamW divides by sqrt(v), which
    # magnifies that float noise where a gradient is near zero (seen: 1.2e-5 on one fc bias). 5e-5 is still 40x
    # below one step's learning rate (2e-3), so a wrong shard, scale or reduction would not pass.
    for k in sp:
        np.testing.assert_allclose(dp[k].asnumpy(), sp[k].asnumpy(), atol=5e-5, rtol=0, err_msg=k)
    # evaluation over 2 ranks counts every one of the 15 images once, as one process does
    val = re.findall(r"validation: top-1 ([\d.]+)% .* on (\d+) images", log0)
    assert val and int(val[-1][1]) == 15 and float(val[-1][0]) == pytest.approx(result["top1"], abs=1e-6)


@pytest.mark.slow
def test_a_failing_rank_fails_the_job_with_its_error(digits, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(digits, bad)
    (bad / "train" / "digit1" / "0.png").write_bytes(b"not an image")  # lands in exactly one rank's shard
    proc = _launch(bad, tmp_path / "out", tmp_path / "logs")
    assert proc.returncode != 0
    logs = "".join((tmp_path / "logs" / n).read_text(errors="replace") for n in ("worker_0.log", "worker_1.log"))
    assert "digit1/0.png decode failed" in logs


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("run_standalone_train.sh", [], "CONFIG and DATA_DIR are required"),
        ("run_standalone_train.sh", ["config/nope.yaml", "data"], "CONFIG 'config/nope.yaml' is not a file"),
        ("run_standalone_train.sh", ["config/demo_digits.yaml", "/no/data"], "DATA_DIR '/no/data' is not a directory"),
        ("run_standalone_train.sh", ["config/demo_digits.yaml", "tests", "TPU"], "DEVICE_TARGET must be"),
        ("run_distribute_train_gpu.sh", ["config/demo_digits.yaml", "tests", "two"], "WORKER_NUM must be an integer"),
        ("run_distribute_train_gpu.sh", ["config/demo_digits.yaml", "tests", "2", "4"], "exceeds WORKER_NUM"),
        ("run_distribute_train.sh", ["config/demo_digits.yaml", "tests", "table.json"], "is not a file"),
        ("run_distribute_train.sh", ["config/demo_digits.yaml", "tests", "0"], "WORKER_NUM must be an integer >= 1"),
        ("run_eval.sh", ["config/demo_digits.yaml", "tests", "missing.ckpt"], "CHECKPOINT 'missing.ckpt'"),
        ("run_export.sh", ["config/demo_digits.yaml", "README.md", "AIR"], "AIR export needs DEVICE_TARGET Ascend"),
        ("run_export.sh", ["config/demo_digits.yaml", "README.md", "PNG"], "FILE_FORMAT must be"),
    ],
)
def test_launchers_reject_bad_arguments_with_usage(script, args, message):
    proc = subprocess.run(["bash", f"scripts/{script}", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and "usage: bash scripts/" + script in proc.stderr


@pytest.mark.parametrize(
    "script",
    [
        "run_standalone_train.sh",
        "run_distribute_train.sh",
        "run_distribute_train_gpu.sh",
        "run_eval.sh",
        "run_export.sh",
    ],
)
def test_launchers_print_usage(script):
    proc = subprocess.run(["bash", f"scripts/{script}", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: bash scripts/" + script)
    text = (ROOT / "scripts" / script).read_text()
    assert "set -euo pipefail" in text and "cp -r" not in text
