"""Tools: the FLOPs counter (model summary). The benchmark tool has its own tests (test_bench.py)."""

from __future__ import annotations

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
