"""Tools: the FLOPs counter (model summary) and the memory benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

ENV = dict(os.environ, GLOG_v="3")


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_model_summary_prints_parameters_and_shape():
    proc = run("scripts/model_summary.py", "--model", "acmix_resnet26", "--size", "32", "--num_classes", "10")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("acmix_resnet26"))
    assert "(1, 10)" in line


def test_model_summary_rejects_unknown_model():
    proc = run("scripts/model_summary.py", "--model", "resnet9000")
    assert proc.returncode != 0 and "unknown model" in proc.stderr


def test_memory_benchmark_runs_and_reports_ratios(tmp_path):
    out = tmp_path / "mem.json"
    proc = run("benchmarks/acmix_memory.py", "--batch", "1", "--size", "12", "--repeat", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())["results"]
    assert {(r["impl"], r["mode"]) for r in results} == {
        (impl, mode) for impl in ("unfold", "blocked") for mode in ("forward", "forward+backward")
    }
    assert all(r["peak_mib"] >= 0 and r["median_s"] > 0 for r in results)
    assert "mem ratio" in proc.stdout
