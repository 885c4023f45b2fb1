"""Smoke test of benchmarks/bench.py: the smallest case at tiny shapes, MindSpore only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench.py"
ENV = dict(os.environ, GLOG_v="3")


def test_bench_module_forward_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--cases", "module_fwd", "--batch", "1", "--size", "8", "--repeat", "2"]
    proc = subprocess.run([*cmd, "--json", str(out)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| module_fwd | 1 | 8 |" in proc.stdout  # the markdown table row

    data = json.loads(out.read_text())
    assert data["setting"]["batch"] == 1 and data["setting"]["size_override"] == 8
    assert data["setting"]["official"] is None
    (row,) = data["results"]
    assert (row["case"], row["impl"], row["status"], row["size"]) == ("module_fwd", "mindspore", "ok", 8)
    assert row["framework"].startswith("mindspore ") and row["precision"] == "float32"
    assert len(row["times_s"]) == 2 and row["median_s"] > 0 and row["first_call_s"] > 0
    assert row["images_per_s"] == pytest.approx(1 / row["median_s"], rel=0.02)
    assert row["compile_s"] > 0 and row["compile_peak_mib"] >= 0
    assert isinstance(row["run_peak_mib"], float) and row["peak_mib"] >= row["run_peak_mib"]
    assert data["comparison"] == [{"case": "module_fwd", "time_ratio": None, "mem_ratio": None}]


def test_bench_rejects_unknown_case() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cases", "module_fwd,nope"], cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "nope" in proc.stderr


def test_bench_skips_official_without_its_files(tmp_path: Path) -> None:
    from benchmarks.bench import _official_usable

    ok, why = _official_usable(tmp_path)
    assert not ok and "test_bottleneck.py" in why
