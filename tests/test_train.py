"""train.py / eval.py end to end on a tiny ImageFolder: learning, exact resume, checkpoints, bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from src.logging_utils import MetricsLog
from tests.conftest import ROOT, TINY


def _cfg(data_dir: str, out: str, *extra: str):
    from src.config import parse_config

    return parse_config([*TINY, "--data_dir", data_dir, "--output_dir", out, *extra])


def _weights(path: str):
    from src.checkpoint import read_checkpoint

    params, meta = read_checkpoint(path)
    return {k: v.asnumpy() for k, v in params.items()}, meta


def _train_losses(out: str):
    return [r["loss"] for r in MetricsLog.read(os.path.join(out, "metrics.jsonl")) if r["kind"] == "train"]


@pytest.mark.slow
def test_training_resume_and_eval(stripes, tmp_path):
    """Loss goes down; resuming from the epoch-1 checkpoint reproduces epoch 2 exactly; eval.py agrees."""
    from src.evaluator import run_eval
    from src.trainer import train

    full, resumed_dir = str(tmp_path / "full"), str(tmp_path / "resumed")
    result = train(_cfg(stripes, full, "--epochs", "2", "--keep_checkpoints", "2"))
    assert ms.get_context("enable_graph_kernel") is True  # graph_kernel auto: training fused on CPU (src/env.py)
    losses = _train_losses(full)
    assert len(losses) == 8 and np.mean(losses[4:]) < np.mean(losses[:4]), losses
    for name in ("config.yaml", "train.log", "curves.png", "acmix_resnet26_best.ckpt", "acmix_resnet26_epoch1.ckpt"):
        assert os.path.isfile(os.path.join(full, name)), name

    # a run killed during epoch 2, after logging its steps but before saving: its folder holds the epoch-1
    # checkpoint and a metrics log that runs past it. --resume auto must continue one history from step 4 and
    # reproduce the uninterrupted run's epoch 2 exactly.
    os.makedirs(resumed_dir)
    shutil.copy(os.path.join(full, "acmix_resnet26_epoch1.ckpt"), resumed_dir)
    shutil.copy(os.path.join(full, "metrics.jsonl"), resumed_dir)
    resumed = train(_cfg(stripes, resumed_dir, "--epochs", "2", "--resume", "auto"))
    w_full, meta_full = _weights(os.path.join(full, "acmix_resnet26_epoch2.ckpt"))
    w_res, meta_res = _weights(os.path.join(resumed_dir, "acmix_resnet26_epoch2.ckpt"))
    assert meta_full["global_step"] == meta_res["global_step"] == 8
    assert set(w_full) == set(w_res)
    assert any(k.startswith(("moments.", "adam_m.")) for k in w_full)  # the optimizer state is in the checkpoint
    for k in w_full:
        np.testing.assert_allclose(w_res[k], w_full[k], atol=1e-5, rtol=0, err_msg=k)
    np.testing.assert_allclose(_train_losses(resumed_dir), losses, atol=1e-5)
    steps = [r["step"] for r in MetricsLog.read(os.path.join(resumed_dir, "metrics.jsonl")) if r["kind"] == "train"]
    assert steps == list(range(1, 9))
    assert resumed["top1"] == pytest.approx(result["top1"])

    # eval.py on the saved checkpoint reports the last validation of training
    ckpt = os.path.join(full, "acmix_resnet26_epoch2.ckpt")
    evaluated = run_eval(_cfg(stripes, str(tmp_path / "eval"), "--checkpoint", ckpt))
    assert ms.get_context("enable_graph_kernel") is True  # and inference
    assert evaluated["top1"] == pytest.approx(result["top1"])
    assert evaluated["num_images"] == 8
    with open(tmp_path / "eval" / "eval.json", encoding="utf-8") as f:
        assert json.load(f)["top1"] == pytest.approx(result["top1"])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous checkpoint and no file under a checkpoint name."""
    import mindspore as ms
    from mindspore import Parameter, Tensor

    from src import checkpoint

    params = {"w": Parameter(Tensor(np.ones((2, 2), np.float32)), name="w")}
    path = str(tmp_path / "m_epoch1.ckpt")
    checkpoint.save_checkpoint(params, path, {"epoch": 1, "global_step": 3})

    def dying_save(entries, file, append_dict=None):
        with open(file, "wb") as f:
            f.write(b"truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr(ms, "save_checkpoint", dying_save)
    params["w"].set_data(Tensor(np.zeros((2, 2), np.float32)))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(params, str(tmp_path / "m_epoch2.ckpt"), {"epoch": 2, "global_step": 6})
    monkeypatch.undo()
    assert checkpoint.latest_checkpoint(str(tmp_path), "m") == path
    loaded, meta = checkpoint.read_checkpoint(path)
    assert meta["epoch"] == 1 and np.all(loaded["w"].asnumpy() == 1)


def test_rotation_keeps_newest(tmp_path):
    from src.checkpoint import latest_checkpoint, rotate_checkpoints

    for e in (1, 2, 3, 10):
        (tmp_path / f"m_epoch{e}.ckpt").write_bytes(b"x")
    removed = rotate_checkpoints(str(tmp_path), "m", 2)
    assert sorted(os.path.basename(p) for p in removed) == ["m_epoch1.ckpt", "m_epoch2.ckpt"]
    assert latest_checkpoint(str(tmp_path), "m").endswith("m_epoch10.ckpt")


def test_lr_schedule_and_decay_groups():
    from mindspore import nn

    from src.optim import param_groups, scaled_lr, warmup_cosine_lr

    lrs = warmup_cosine_lr(0.1, 0.001, 0.0, epochs=4, warmup_epochs=1, steps_per_epoch=5)
    assert len(lrs) == 20 and lrs[0] == 0.0 and lrs[5] == pytest.approx(0.1) and lrs[-1] > 0.001
    assert np.all(np.diff(lrs[:6]) > 0) and np.all(np.diff(lrs[5:]) < 0)
    assert scaled_lr(5e-4, 1024, 512) == pytest.approx(1e-3) and scaled_lr(0.1, 64, 0) == 0.1

    from src.models import create_model

    net = create_model("acmix_swin_tiny", num_classes=3, img_size=32, patch_size=2, window_size=4, depths=(1, 1, 1, 1))
    decay, no_decay = param_groups(net.trainable_params(), 0.05)
    names = {p.name for p in no_decay["params"]} if isinstance(no_decay, dict) else set()
    assert all(len(p.shape) >= 2 for p in decay["params"])
    assert any("relative_position_bias_table" in n for n in names)
    assert any(n.endswith("rate1") for n in names) and any(n.endswith("gamma") for n in names)
    assert not any("relative_position_bias_table" in p.name for p in decay["params"])
    assert isinstance(net, nn.Cell)


def _main(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOG_v="3")
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_eval_rejects_checkpoint_that_does_not_fit(stripes, tmp_path):
    """A checkpoint of another class count is an error listing the head's shapes, never a partial load."""
    from mindspore import Parameter, Tensor

    from src.checkpoint import CheckpointError, load_model_weights, save_checkpoint
    from src.models import create_model

    other = create_model("acmix_resnet26", num_classes=3, layers=(1, 1, 1, 1))
    path = str(tmp_path / "three_classes.ckpt")
    save_checkpoint(other.parameters_dict(), path, {"epoch": 1, "global_step": 1})
    net = create_model("acmix_resnet26", num_classes=2, layers=(1, 1, 1, 1))
    before = {k: v.asnumpy().copy() for k, v in net.parameters_dict().items()}
    with pytest.raises(
        CheckpointError, match=r"wrong shape: .*fc\.weight: checkpoint \(3, 2048\) vs model \(2, 2048\)"
    ):
        load_model_weights(net, path)
    assert all(np.array_equal(before[k], v.asnumpy()) for k, v in net.parameters_dict().items())

    extra = {**other.parameters_dict(), "mystery": Parameter(Tensor(np.zeros(2, np.float32)), name="mystery")}
    save_checkpoint(extra, path, {})
    with pytest.raises(CheckpointError, match="unexpected: mystery"):
        load_model_weights(create_model("acmix_resnet26", num_classes=3, layers=(1, 1, 1, 1)), path)

    proc = _main("eval.py", *TINY, "--data_dir", stripes, "--checkpoint", str(tmp_path / "missing.ckpt"))
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr


def test_stacked_finiteness_sees_one_bad_value_among_many_gradients():
    """The CPU overflow check of TrainStep (stacked flags instead of all_finite's single AddN, which the fused
    kernel compiler cannot finish) in graph mode: one inf or nan anywhere makes the step non-finite."""
    from mindspore import Tensor

    from src.engine import stacked_all_finite

    check = ms.jit(stacked_all_finite)
    grads = [np.ones((3, 2), np.float32) for _ in range(120)] + [np.ones((), np.float32)]
    assert bool(check(tuple(Tensor(g) for g in grads)).asnumpy())
    for bad_index, bad in ((0, np.inf), (77, np.nan), (120, -np.inf)):
        broken = [g.copy() for g in grads]
        broken[bad_index][...] = bad
        assert not bool(check(tuple(Tensor(g) for g in broken)).asnumpy()), (bad_index, bad)


def test_overflowing_steps_are_skipped_and_the_scale_adapts():
    """Dynamic loss scaling: an overflow leaves weights, optimizer and EMA untouched and halves the scale;
    scale_window finite steps double it."""
    from mindspore import Tensor, nn

    from src.engine import ClassificationLoss, NetWithLoss, TrainStep

    net = nn.Dense(4, 3)
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
    step = TrainStep(
        NetWithLoss(net, ClassificationLoss(3)), opt, loss_scale=3e38, dynamic=True, scale_window=2, ema_decay=0.5
    )
    x = Tensor(np.full((2, 4), 100.0, np.float32))
    y = Tensor(np.array([0, 2], np.int32))
    before = net.weight.asnumpy().copy()
    _, finite, scale = step(x, y)  # 3e38 times weight gradients of order 10 overflows float32
    assert not bool(finite.asnumpy()) and float(scale.asnumpy()) == pytest.approx(3e38)
    np.testing.assert_array_equal(net.weight.asnumpy(), before)
    assert float(step.scale.asnumpy()) == pytest.approx(1.5e38)
    assert np.array_equal(step.ema[0].asnumpy(), before)
    step.scale.set_data(Tensor(np.float32(1024.0)))
    for _ in range(2):
        _, finite, _ = step(x, y)
        assert bool(finite.asnumpy())
    assert float(step.scale.asnumpy()) == pytest.approx(2048.0)  # grown after scale_window finite steps
    assert not np.array_equal(net.weight.asnumpy(), before)
    assert not np.array_equal(step.ema[0].asnumpy(), before)  # EMA follows the updates
