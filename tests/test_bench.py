"""The benchmark tool (benchmarks/bench.py) and the fixture generator (benchmarks/make_fixtures.py).

The runs here are smoke tests at tiny shapes, MindSpore only. The official code is not part of this repository:
the tests that import it run only where ACMIX_OFFICIAL names a checkout of LeapLabTHU/ACmix and torch is
installed (requirements-bench.txt).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench.py"
FIXTURE_SCRIPT = ROOT / "benchmarks" / "make_fixtures.py"
ENV = dict(os.environ, GLOG_v="3")
OFFICIAL = os.environ.get("ACMIX_OFFICIAL")
needs_official = pytest.mark.skipif(
    not OFFICIAL or importlib.util.find_spec("torch") is None,
    reason="set ACMIX_OFFICIAL to a checkout of LeapLabTHU/ACmix and pip install -r requirements-bench.txt",
)


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_bench_module_blocked_and_unfold_write_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cases = "module_fwd,module_unfold_fwd"
    args = ["--cases", cases, "--batch", "1", "--size", "8", "--repeat", "2", "--json", str(out), "--compile_profile"]
    proc = _run(str(SCRIPT), *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| module_fwd | 1 | 8 |" in proc.stdout  # the markdown table rows
    assert "| module_unfold_fwd | 1 | 8 |" in proc.stdout
    assert "| module_fwd / module_unfold_fwd |" in proc.stdout  # the blocked / unfold table

    data = json.loads(out.read_text())
    assert data["setting"]["batch"] == 1 and data["setting"]["size_override"] == 8
    assert data["setting"]["official"] is None
    blocked, unfold = data["results"]
    assert (blocked["case"], blocked["impl"], blocked["status"], blocked["size"]) == (
        "module_fwd",
        "mindspore",
        "ok",
        8,
    )
    assert (blocked["attn_impl"], unfold["attn_impl"], unfold["status"]) == ("blocked", "unfold", "ok")
    for row in (blocked, unfold):
        assert row["framework"].startswith("mindspore ") and row["precision"] == "float32"
        assert len(row["times_s"]) == 2 and row["median_s"] > 0 and row["first_call_s"] > 0
        assert row["images_per_s"] == pytest.approx(1 / row["median_s"], rel=0.02)
        assert row["compile_s"] > 0 and row["compile_peak_mib"] >= 0
        assert isinstance(row["run_peak_mib"], float) and row["peak_mib"] >= row["run_peak_mib"]
        assert set(row["compile_phases_s"]) >= {"type_inference", "task_emit"}  # MindSpore's profile was read
    assert data["comparison"] == [
        {"case": "module_fwd", "time_ratio": None, "mem_ratio": None},
        {"case": "module_unfold_fwd", "time_ratio": None, "mem_ratio": None},
    ]
    (ratio,) = data["attn_impl_comparison"]
    assert (ratio["case"], ratio["baseline"]) == ("module_fwd", "module_unfold_fwd")
    assert ratio["time_ratio"] == pytest.approx(blocked["median_s"] / unfold["median_s"], abs=2e-3)


def test_ratios_come_from_one_run_of_each_case() -> None:
    from benchmarks.bench import CASES, compare_attn_impls, summarize

    def row(case: str, impl: str, median: float, peak: float, run_peak: float) -> dict:
        return dict(case=case, impl=impl, status="ok", batch=2, size=8, median_s=median, peak_mib=peak,
                    run_peak_mib=run_peak, compile_s=1.0, images_per_s=2 / median)  # fmt: skip

    rows = [
        row("module_fwd", "mindspore", 0.2, 400.0, 200.0),
        row("module_fwd", "official", 0.8, 1000.0, 1000.0),
        row("module_unfold_fwd", "mindspore", 1.0, 3200.0, 3000.0),
    ]
    cases = [CASES["module_fwd"], CASES["module_unfold_fwd"], CASES["module_fwdbwd"]]
    comparison, table = summarize(rows, cases)
    assert comparison[0] == {"case": "module_fwd", "time_ratio": 0.25, "mem_ratio": 0.4}
    assert "| module_fwd | 2 | 8 |" in table and "module_fwdbwd" not in table  # not run: no row
    (item,), impl_table = compare_attn_impls(rows, cases)
    assert item == {"case": "module_fwd", "baseline": "module_unfold_fwd", "time_ratio": 0.2, "mem_ratio": 0.125,
                    "run_mem_ratio": 0.067}  # fmt: skip
    assert impl_table.count("\n") == 2  # header, rule, one row
    for case in CASES.values():  # every baseline is the unfold twin of its case
        if case.baseline:
            base = CASES[case.baseline]
            assert (base.attn_impl, base.train, base.model, case.attn_impl) == (
                "unfold",
                case.train,
                "module",
                "blocked",
            )


def test_compile_phases_are_read_from_mindspores_profile() -> None:
    """--compile_profile: the "Sums" block of MindSpore's compile profile, summed by phase; the longest graph wins."""
    from benchmarks.bench import CASES, compile_phases, summarize

    small = "Sums\n    type_inference : 0.5s : 50%\n    task_emit : 0.5s : 50%\n\n"
    big = (
        "TotalTime = 12.0, [3]\nSums\n    bootstrap : 0.002s : 0.01%\n    type_inference : 3.000s : 25%\n"
        "    optimize.opt_a.a_1 : 2.000s : 16%\n    optimize.opt_b : 1.000s : 8%\n    task_emit : 6.000s : 50%\n"
        "\nTime group info:\n 0.06% :     0.000568s :    378: substitution.addn_check_dump\n"
    )
    phases = compile_phases("warning: something\n" + small + big + '{"median_s": 1}')
    assert phases == {"optimize": 3.0, "other": 0.0, "task_emit": 6.0, "type_inference": 3.0}
    assert compile_phases("no profile here") == {}
    row = dict(case="resnet50_train", impl="mindspore", status="ok", batch=8, size=224, median_s=1.0, peak_mib=1.0,
               run_peak_mib=1.0, compile_s=12.0, images_per_s=8.0, compile_phases_s=phases)  # fmt: skip
    _, table = summarize([row], [CASES["resnet50_train"]])
    assert "| resnet50_train | 12.0 | 3.0 | 3.0 | 6.0 | 0.0 |" in table


def test_bench_rejects_unknown_case() -> None:
    proc = _run(str(SCRIPT), "--cases", "module_fwd,nope")
    assert proc.returncode == 2 and "nope" in proc.stderr


def test_bench_skips_official_without_its_files(tmp_path: Path) -> None:
    from benchmarks.official import official_usable

    ok, why = official_usable(tmp_path)
    assert not ok and "test_bottleneck.py" in why


def test_make_fixtures_never_overwrites_without_force(tmp_path: Path) -> None:
    (tmp_path / "acmix_module_s1.npz").write_bytes(b"keep")
    proc = _run(str(FIXTURE_SCRIPT), "--official", str(tmp_path), "--out", str(tmp_path), "--only", "acmix_module_s1")
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (tmp_path / "acmix_module_s1.npz").read_bytes() == b"keep"


def test_fixture_files_are_deterministic_and_compared_strictly(tmp_path: Path) -> None:
    from benchmarks.make_fixtures import compare, write_npz

    arrays = {"param/w": np.arange(6, dtype=np.float32).reshape(2, 3), "input": np.ones(3, np.float32)}
    arrays["output"] = np.full(3, 2.0, np.float32)
    cfg = {"name": "x", "seed_weights": 1}
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    write_npz(a, arrays, cfg)
    write_npz(b, arrays, cfg)
    assert a.read_bytes() == b.read_bytes()
    z = np.load(a)
    assert z.files == ["param/w", "input", "output", "config_json"] and json.loads(z["config_json"].item()) == cfg
    assert compare(b, a) == (True, "identical bytes")

    write_npz(b, {**arrays, "output": arrays["output"] + np.float32(1e-6)}, cfg)
    ok, how = compare(b, a)
    assert ok and "parameters, input and config equal" in how  # computed values: within 1e-5
    write_npz(b, {**arrays, "param/w": arrays["param/w"] + np.float32(1e-6)}, cfg)
    ok, how = compare(b, a)
    assert not ok and "param/w" in how  # seeded values: exactly


@needs_official
def test_make_fixtures_rebuilds_tests_data(tmp_path: Path) -> None:
    only = "acmix_module_s2,swin_window_attention"
    proc = _run(str(FIXTURE_SCRIPT), "--official", OFFICIAL, "--out", str(tmp_path), "--only", only,
                "--compare", str(ROOT / "tests" / "data"))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": OK") == 2, proc.stdout


@needs_official
def test_bench_runs_the_official_module(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _run(str(SCRIPT), "--cases", "module_fwd", "--batch", "1", "--size", "8", "--repeat", "2",
                "--graph_kernel", "off", "--official", OFFICIAL, "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    official = next(r for r in data["results"] if r["impl"] == "official")
    assert official["status"] == "ok" and official["framework"].startswith("torch ")
    assert data["comparison"][0]["time_ratio"] is not None
