"""export.py, MindIR reload and inference, eval.py on MindIR, and the official-checkpoint converter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import DATA, ROOT, assert_parity, load_fixture

SWIN_FIXTURE_KWARGS = (
    "{img_size: 32, patch_size: 2, embed_dim: 32, depths: [2, 2], num_heads: [2, 4], window_size: 4, "
    "drop_path_rate: 0.0}"
)
FAMILIES = {
    "acmix_resnet26": "{layers: [1, 1, 1, 1]}",
    "acmix_swin_tiny": "{patch_size: 2, window_size: 4, depths: [1, 1], num_heads: [2, 4], embed_dim: 16}",
    "acmix_pvt_tiny": "{depths: [1, 1, 1, 1]}",
    "acmix_san10": "{layers: [1, 1, 1, 1, 1]}",
}


def _cfg(*args: str):
    from src.config import parse_config

    return parse_config(list(args))


def _random_checkpoint(model: str, kwargs: str, path: str, num_classes: int = 3) -> None:
    from src.checkpoint import save_checkpoint
    from src.models import create_model_from_config

    net = create_model_from_config(
        _cfg("--model", model, "--model_kwargs", kwargs, "--num_classes", str(num_classes), "--img_size", "32")
    )
    save_checkpoint(net.parameters_dict(), path, {"epoch": 0, "global_step": 0})


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_mindir_export_reloads_with_matching_output(model, tmp_path):
    from src.exporter import export_model

    ckpt = str(tmp_path / "m.ckpt")
    _random_checkpoint(model, FAMILIES[model], ckpt)
    cfg = _cfg(
        "--model", model, "--model_kwargs", FAMILIES[model], "--num_classes", "3", "--img_size", "32",
        "--checkpoint", ckpt, "--output_dir", str(tmp_path), "--export_batch_size", "2",
    )  # fmt: skip
    result = export_model(cfg, log=lambda *_: None)
    assert result["path"] == str(tmp_path / f"{model}_2x3x32x32.mindir")
    assert os.path.isfile(result["path"]) and result["max_abs_diff"] <= result["tolerance"]
    assert result["tolerance"] == pytest.approx(1e-4 * max(1.0, result["output_scale"]))


def test_air_is_refused_off_ascend_before_any_work(tmp_path):
    from src.exporter import ExportError, export_model

    cfg = _cfg("--file_format", "AIR", "--checkpoint", str(tmp_path / "never_read.ckpt"))
    with pytest.raises(ExportError, match="AIR export needs the Ascend backend"):
        export_model(cfg)


def test_existing_output_needs_force(tmp_path):
    from src.exporter import ExportError, export_model, export_path

    cfg = _cfg("--checkpoint", str(tmp_path / "never_read.ckpt"), "--output_dir", str(tmp_path))
    target = export_path(cfg)
    assert os.path.basename(target) == "acmix_resnet26_1x3x224x224.mindir"
    with open(target, "w") as f:
        f.write("keep me")
    with pytest.raises(ExportError, match="--force"):
        export_model(cfg)
    assert open(target).read() == "keep me"
    assert export_path(_cfg("--file_name", str(tmp_path / "x.mindir"))) == str(tmp_path / "x.mindir")


def _digit_folder(root, n_per_class: int = 3):
    """A tiny ImageFolder of the bundled digits (real images), 2 classes."""
    z = np.load(ROOT / "data" / "digits.npz")
    images, labels = z["images"], z["labels"]
    for split in ("train", "val"):
        for digit in (0, 1):
            folder = root / split / f"digit{digit}"
            folder.mkdir(parents=True)
            for j, idx in enumerate(np.flatnonzero(labels == digit)[:n_per_class]):
                pixels = (images[idx].astype(np.float32) * 255 / 16).astype(np.uint8)
                Image.fromarray(np.repeat(pixels[:, :, None], 3, 2)).resize((32, 32), Image.NEAREST).save(
                    folder / f"{j}.png"
                )
    return root


@pytest.mark.slow
def test_eval_of_mindir_matches_checkpoint_and_predict_names_classes(tmp_path):
    from src.evaluator import predict_files, run_eval
    from src.exporter import export_model

    data = _digit_folder(tmp_path / "digits")
    ckpt_dir = tmp_path / "run"
    ckpt_dir.mkdir()
    ckpt = str(ckpt_dir / "m.ckpt")
    _random_checkpoint("acmix_resnet26", FAMILIES["acmix_resnet26"], ckpt, num_classes=2)
    (ckpt_dir / "class_names.json").write_text(json.dumps(["digit0", "digit1"]))
    common = [
        "--model_kwargs", FAMILIES["acmix_resnet26"], "--num_classes", "2", "--img_size", "32", "--crop_pct", "1.0",
        "--data_dir", str(data), "--output_dir", str(ckpt_dir), "--eval_batch_size", "4", "--num_workers", "1",
    ]  # fmt: skip
    exported = export_model(_cfg(*common, "--checkpoint", ckpt, "--export_batch_size", "4"), log=lambda *_: None)
    from_ckpt = run_eval(_cfg(*common, "--checkpoint", ckpt))
    from_mindir = run_eval(_cfg(*common, "--checkpoint", exported["path"]))
    assert from_ckpt["num_images"] == from_mindir["num_images"] == 6  # 6 = one full batch of 4 and a padded 2
    assert from_mindir["top1"] == from_ckpt["top1"]
    assert from_mindir["loss"] == pytest.approx(from_ckpt["loss"], abs=1e-4)

    preds = predict_files(_cfg(*common, "--checkpoint", exported["path"], "--predict", str(data / "val" / "digit0")))
    assert len(preds) == 3 and all(len(p["top5"]) == 2 for p in preds)
    assert {name for name, _ in preds[0]["top5"]} == {"digit0", "digit1"}
    assert sum(prob for _, prob in preds[0]["top5"]) == pytest.approx(1.0, abs=1e-5)


def test_converter_reproduces_the_official_swin_fixture(tmp_path):
    pytest.importorskip("torch", reason="reading the official .pth needs torch (.ci/run installs the CPU build)")
    from mindspore import Tensor

    from src.checkpoint import load_model_weights
    from src.models import create_model_from_config

    out = tmp_path / "swin.ckpt"
    proc = subprocess.run(
        [
            sys.executable, "scripts/convert_torch_checkpoint.py", "--model", "acmix_swin_tiny",
            "--src", str(DATA / "acmix_swin_tiny_small.pth"), "--out", str(out), "--num_classes", "10",
            "--model_kwargs", SWIN_FIXTURE_KWARGS,
        ],
        cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, GLOG_v="3"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "every parameter mapped" in proc.stdout
    _, _, x, y, _ = load_fixture("acmix_swin_tiny_small")
    net = create_model_from_config(
        _cfg(
            "--model",
            "acmix_swin_tiny",
            "--num_classes",
            "10",
            "--img_size",
            "32",
            "--model_kwargs",
            SWIN_FIXTURE_KWARGS,
        )
    )
    load_model_weights(net, str(out))
    net.set_train(False)
    assert_parity(net(Tensor(x.astype(np.float32))).asnumpy(), y)


def test_converter_lists_what_does_not_map(tmp_path):
    """An .npz state dict (no torch needed) with one renamed and one foreign tensor is refused, listing both."""
    from src.models import create_model

    net = create_model("acmix_resnet26", num_classes=3, layers=(1, 1, 1, 1))
    state = {
        k.replace("gamma", "weight").replace("beta", "bias"): v.asnumpy() for k, v in net.parameters_dict().items()
    }
    state = {
        k.replace("moving_mean", "running_mean").replace("moving_variance", "running_var"): v for k, v in state.items()
    }
    state["extra.weight"] = np.zeros(3, np.float32)
    del state["fc.bias"]
    src = tmp_path / "official.npz"
    np.savez(src, **state)
    proc = subprocess.run(
        [sys.executable, "scripts/convert_torch_checkpoint.py", "--model", "acmix_resnet26", "--src", str(src),
         "--out", str(tmp_path / "o.ckpt"), "--num_classes", "3", "--model_kwargs", "{layers: [1, 1, 1, 1]}"],
        cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, GLOG_v="3"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "did not map: extra.weight" in proc.stderr and "not in the checkpoint: fc.bias" in proc.stderr
    assert not (tmp_path / "o.ckpt").exists()


@pytest.mark.slow
def test_onnx_export_of_acmix_resnet_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (in requirements-test.txt)")
    from src.exporter import export_model

    ckpt = str(tmp_path / "m.ckpt")
    _random_checkpoint("acmix_resnet26", FAMILIES["acmix_resnet26"], ckpt)
    cfg = _cfg(
        "--model_kwargs", FAMILIES["acmix_resnet26"], "--num_classes", "3", "--img_size", "32",
        "--checkpoint", ckpt, "--output_dir", str(tmp_path), "--file_format", "ONNX", "--export_batch_size", "2",
    )  # fmt: skip
    result = export_model(cfg, log=lambda *_: None)
    assert result["path"].endswith("acmix_resnet26_2x3x32x32.onnx")
    assert result["max_abs_diff"] is not None and result["max_abs_diff"] <= result["tolerance"]


def test_onnx_refusal_names_the_operator(tmp_path):
    """Swin's exact GELU needs Erf, which MindSpore 2.8's ONNX exporter lacks: a clear error, no file."""
    from src.exporter import ExportError, export_model

    ckpt = str(tmp_path / "m.ckpt")
    _random_checkpoint("acmix_swin_tiny", FAMILIES["acmix_swin_tiny"], ckpt)
    cfg = _cfg(
        "--model", "acmix_swin_tiny", "--model_kwargs", FAMILIES["acmix_swin_tiny"], "--num_classes", "3",
        "--img_size", "32", "--checkpoint", ckpt, "--output_dir", str(tmp_path), "--file_format", "ONNX",
    )  # fmt: skip
    with pytest.raises(ExportError, match="Erf"):
        export_model(cfg, log=lambda *_: None)
    assert not list(tmp_path.glob("*.onnx"))
