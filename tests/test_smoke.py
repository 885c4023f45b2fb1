"""scripts/run_smoke_test.sh on CPU, as a user runs it on a new host: every step passes and the table and its JSON
name each step (on Ascend and GPU the same script is the first check; docs/accelerators.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_smoke_test_passes_on_cpu_and_prints_its_table(tmp_path):
    env = dict(os.environ, GLOG_v="3", PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", "scripts/run_smoke_test.sh", "CPU", "--output_dir", str(tmp_path), "--steps", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| step | result | seconds | detail |" in proc.stdout
    report = json.loads((tmp_path / "smoke.json").read_text())
    steps = [r["step"] for r in report["results"]]
    assert report["host"]["device_target"] == "CPU" and all(r["ok"] for r in report["results"])
    for expected in ("train (1 epoch", "eval.py on the checkpoint", "export.py MINDIR", "--predict on the MindIR",
                     "acmix_resnet50 train step at 224", "acmix_swin_tiny train step at 224"):  # fmt: skip
        assert any(expected in s for s in steps), (expected, steps)
    assert "AIR" not in " ".join(steps)  # AIR only on Ascend
