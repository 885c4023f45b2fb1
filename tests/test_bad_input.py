"""Bad input to train.py, eval.py and export.py: exit code 2, one ``error:`` line on stderr, no traceback, and a
run folder that a refused command leaves exactly as it was."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY


@pytest.fixture(scope="module")
def files(tmp_path_factory, stripes) -> dict:
    """Bad files to point the commands at, a checkpoint that fits TINY, and an image folder with a broken image."""
    from src.checkpoint import save_checkpoint
    from src.models import create_model

    root = tmp_path_factory.mktemp("bad_input")
    (root / "bad.yaml").write_text("lr: [0.1\n", encoding="utf-8")
    (root / "truncated.ckpt").write_bytes(b"\x08\x01 not a checkpoint")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not an image")
    good = root / "tiny.ckpt"
    save_checkpoint(create_model("acmix_resnet26", num_classes=2, layers=(1, 1, 1, 1)).parameters_dict(), str(good), {})
    (root / "exists.mindir").write_bytes(b"keep me")
    return {"dir": str(root), "data": stripes, "ckpt": str(good)}


# (script, arguments, a word the message must contain); {dir}, {data} and {ckpt} come from the fixture.
CASES = [
    ("train.py", ["--epochs", "-1"], "epochs"),
    ("train.py", ["--epochs", "abc"], "epochs"),
    ("train.py", ["--hflip", "2"], "hflip"),
    ("train.py", ["--lr", "-0.1"], "lr"),
    ("train.py", ["--scale", "0.9,0.1"], "scale"),
    ("train.py", ["--lrr", "0.1"], "did you mean"),
    ("train.py", ["--config", "{dir}/bad.yaml"], "not valid YAML"),
    ("train.py", ["--config", "{dir}/missing.yaml"], "not found"),
    ("train.py", ["--data_dir", "{dir}/no_such_data"], "no_such_data"),
    ("train.py", ["--num_classes", "5"], "5"),
    ("train.py", ["--batch_size", "64"], "batch"),
    ("train.py", ["--resume", "{dir}/missing.ckpt"], "no such checkpoint"),
    ("train.py", ["--resume", "auto", "--force"], "contradict"),
    ("eval.py", [], "--checkpoint is required"),
    ("eval.py", ["--checkpoint", "{dir}/missing.ckpt"], "checkpoint not found"),
    ("eval.py", ["--checkpoint", "{dir}/truncated.ckpt"], "cannot read checkpoint"),
    ("eval.py", ["--checkpoint", "{ckpt}", "--predict", "{dir}/missing.png"], "no such image"),
    ("eval.py", ["--checkpoint", "{ckpt}", "--predict", "{dir}/broken.png"], "cannot decode"),
    ("eval.py", ["--checkpoint", "{ckpt}", "--num_classes", "3", "--predict", "{data}/val/vertical"], "does not fit"),
    ("export.py", ["--checkpoint", "{ckpt}", "--file_format", "PNG"], "file_format"),
    ("export.py", ["--checkpoint", "{ckpt}", "--export_batch_size", "0"], "export_batch_size"),
    ("export.py", ["--checkpoint", "{dir}/missing.ckpt"], "not found"),
    ("export.py", ["--checkpoint", "{ckpt}", "--file_name", "{dir}/exists"], "--force"),
    ("export.py", ["--checkpoint", "{ckpt}", "--file_format", "AIR"], "Ascend"),
]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOG_v="3")
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("script, args, word", CASES, ids=[f"{s}:{' '.join(a)}" for s, a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, script, args, word):
    args = [a.format(**files) for a in args]
    base = {"--data_dir": files["data"], "--output_dir": str(tmp_path / "out")}
    extra = [x for k, v in base.items() if k not in args for x in (k, v)]
    proc = _run(script, *TINY, *extra, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert word in lines[0]


def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_run_folder_is_refused_untouched_and_force_starts_over(stripes, tmp_path):
    """Training into a folder that holds a run: without --resume/--force, exit 2 and every file byte-identical;
    with --force, the old run's files go and a new run is written (here: one of 1 step)."""
    out = tmp_path / "run"
    out.mkdir()
    old = {
        "acmix_resnet26_epoch3.ckpt": b"OLD-RUN weights",
        "acmix_resnet26_best.ckpt": b"OLD-RUN best",
        "metrics.jsonl": b'{"kind": "train", "step": 12, "note": "OLD-RUN"}\n',
        "curves.png": b"OLD-RUN plot",
        "train.log": b"OLD-RUN log\n",
        "config.yaml": b"old: OLD-RUN\n",
        "notes.txt": b"the user's own file\n",
    }
    for name, data in old.items():
        (out / name).write_bytes(data)
    before = _digests(out)
    argv = [*TINY, "--data_dir", stripes, "--output_dir", str(out), "--epochs", "1"]
    proc = _run("train.py", *argv)
    assert proc.returncode == 2 and "--resume auto" in proc.stderr and "--force" in proc.stderr, proc.stderr
    assert _digests(out) == before

    proc = _run("train.py", *argv, "--force", "--steps_per_epoch", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (out / "acmix_resnet26_epoch3.ckpt").exists()
    assert (out / "notes.txt").read_bytes() == old["notes.txt"]  # not a file of the run: left alone
    assert b"OLD-RUN" not in (out / "metrics.jsonl").read_bytes() + (out / "train.log").read_bytes()
    assert (out / "acmix_resnet26_epoch1.ckpt").is_file() and (out / "curves.png").read_bytes() != old["curves.png"]
