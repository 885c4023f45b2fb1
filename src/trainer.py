"""The training run behind ``train.py``: data, model, optimizer, compiled step, validation, checkpoints, logs."""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import os
import time
from contextlib import contextmanager
from typing import Dict, List, Optional

from .checkpoint import (
    latest_checkpoint,
    load_model_weights,
    restore_train_state,
    rotate_checkpoints,
    save_checkpoint,
)
from .config import Config, save_config
from .env import RunEnv, init_env
from .errors import CheckpointError, ConfigError, DataError
from .evaluator import CLASS_NAMES_FILE
from .logging_utils import MetricsLog, format_seconds, get_logger, plot_curves

__all__ = ["train", "build_network", "epoch_config", "weights_digest", "previous_run_files"]

METRICS_FILE, CURVES_FILE = "metrics.jsonl", "curves.png"


def previous_run_files(folder: str) -> List[str]:
    """The files of an earlier training run in ``folder``: its checkpoints, metrics, plot and training logs.

    Args:
        folder: an ``output_dir``.
    """
    patterns = ("*_epoch*.ckpt", "*_best.ckpt", METRICS_FILE, CURVES_FILE, "train.log", "train_rank*.log")
    return sorted({p for pattern in patterns for p in glob.glob(os.path.join(folder, pattern))})


def _claim_output_dir(cfg: Config) -> List[str]:
    """Refuse to train into a folder that holds another run unless ``--resume`` or ``--force`` says what to do with
    it; returns the files ``--force`` is to remove.  Runs before anything is written, so a refusal changes nothing.
    """
    if cfg.force and cfg.resume:
        raise ConfigError("--force (start over) and --resume (continue) contradict each other; pass one of them")
    if cfg.resume not in ("", "auto") and not os.path.isfile(cfg.resume):
        raise CheckpointError(f"--resume {cfg.resume}: no such checkpoint")
    old = previous_run_files(cfg.output_dir)
    run_markers = [p for p in old if p.endswith((".ckpt", METRICS_FILE))]
    if not run_markers or cfg.resume:
        return []
    if not cfg.force:
        raise ConfigError(
            f"{cfg.output_dir} already holds a training run ({os.path.basename(run_markers[0])}, "
            f"{len(run_markers)} file(s) of record): continue it with --resume auto, or start over with --force "
            "(removes its checkpoints, metrics, plot and training log), or choose another --output_dir"
        )
    return old


def epoch_config(cfg: Config, epoch: int) -> Config:
    """The config the data pipeline sees in ``epoch``: the seed moves with the epoch.

    Each epoch's shuffle and augmentation draws depend only on (seed, epoch), so a resumed run sees exactly the
    batches an uninterrupted run would have seen.

    Args:
        cfg: the run's config.
        epoch: zero-based epoch.
    """
    view = copy.copy(cfg)
    view.seed = cfg.seed + 1000 * epoch
    return view


def weights_digest(net) -> str:
    """SHA-256 of every parameter of ``net`` (name and bytes), in name order.

    Args:
        net: the model.
    """
    h = hashlib.sha256()
    for name, p in sorted(net.parameters_dict().items()):
        h.update(name.encode())
        h.update(p.asnumpy().tobytes())
    return h.hexdigest()


def build_network(cfg: Config):
    """The model of ``cfg`` (with ``pretrained`` weights and the ``amp_level`` cast where asked).

    Args:
        cfg: resolved config.
    """
    import mindspore as ms

    from .models import create_model_from_config

    net = create_model_from_config(cfg)
    if cfg.pretrained:
        load_model_weights(net, cfg.pretrained)
    if cfg.amp_level != "O0":
        net = ms.amp.auto_mixed_precision(net, cfg.amp_level)
    return net


@contextmanager
def _ema_weights(train_step):
    """Temporarily put the EMA weights into the model (validation of an EMA run measures the EMA model)."""
    if train_step.ema_decay <= 0:
        yield
        return
    saved = [p.data.asnumpy().copy() for p in train_step.ema_sources]
    for p, e in zip(train_step.ema_sources, train_step.ema):
        p.set_data(e.data.astype(p.dtype))
    try:
        yield
    finally:
        import mindspore as ms

        for p, s in zip(train_step.ema_sources, saved):
            p.set_data(ms.Tensor(s))


def _validate(cfg: Config, env: RunEnv, net, train_step, all_reduce) -> Dict[str, float]:
    from .data import create_dataset
    from .engine import evaluate

    val_ds, info = create_dataset(cfg, cfg.val_split, training=False, rank_size=env.rank_size, rank_id=env.rank_id)
    with _ema_weights(train_step):
        result = evaluate(net, val_ds.create_tuple_iterator(num_epochs=1), info.num_classes, all_reduce)
    net.set_train(True)
    return result


def train(cfg: Config) -> Dict[str, float]:
    """Train ``cfg.model`` as the config says; returns the last validation result and the best top-1.

    Args:
        cfg: resolved config (see ``src/config.py``).
    """
    stale = _claim_output_dir(cfg)
    env = init_env(cfg.device_target, cfg.mode, cfg.seed, cfg.distribute, cfg.graph_kernel, training=True)
    from mindspore import nn, ops

    from .data import check_dataset, create_dataset
    from .engine import ClassificationLoss, NetWithLoss, TrainStep
    from .optim import create_optimizer, scaled_lr, warmup_cosine_lr

    out = cfg.output_dir
    if env.is_main:
        for path in stale:
            os.remove(path)
    log_name = "train.log" if env.is_main else f"train_rank{env.rank_id}.log"
    log = get_logger("acmix.train", os.path.join(out, log_name), env.rank_id)
    if stale:
        log.info(f"--force: removed {len(stale)} file(s) of the previous run in {out}")

    # Bad data paths and class counts fail here, before anything is compiled.
    info = check_dataset(cfg, cfg.train_split)
    check_dataset(cfg, cfg.val_split)
    if env.is_main:
        save_config(cfg, os.path.join(out, "config.yaml"))
        with open(os.path.join(out, CLASS_NAMES_FILE), "w", encoding="utf-8") as f:
            json.dump(list(info.class_names), f)
    train_ds, info = create_dataset(epoch_config(cfg, 0), cfg.train_split, True, env.rank_size, env.rank_id)
    steps = train_ds.get_dataset_size()
    if steps == 0:
        raise DataError(
            f"{info.num_images} training images give no full batch of {cfg.batch_size} per device "
            f"on {env.rank_size} device(s); lower batch_size"
        )
    global_batch = cfg.batch_size * env.rank_size
    base_lr = scaled_lr(cfg.lr, global_batch, cfg.lr_base_batch)
    log.info(
        f"model {cfg.model} | {info.num_images} training images, {info.num_classes} classes | batch {cfg.batch_size}"
        f" per device x {env.rank_size} device(s) = {global_batch} | lr {cfg.lr} for {cfg.lr_base_batch or 'any'}"
        f" images -> {base_lr:.6g} | {steps} steps/epoch x {cfg.epochs} epochs"
    )

    net = build_network(cfg)
    loss_fn = ClassificationLoss(cfg.num_classes, cfg.label_smoothing)
    lrs = warmup_cosine_lr(base_lr, cfg.min_lr, cfg.warmup_lr, cfg.epochs, cfg.warmup_epochs, steps)
    optimizer = create_optimizer(cfg, net.trainable_params(), lrs)
    reducer = nn.DistributedGradReducer(optimizer.parameters, True, env.rank_size) if env.distributed else None
    train_step = TrainStep(
        NetWithLoss(net, loss_fn),
        optimizer,
        loss_scale=1.0 if cfg.loss_scale_type == "none" else cfg.loss_scale,
        dynamic=cfg.loss_scale_type == "dynamic",
        scale_window=cfg.loss_scale_window,
        clip_grad=cfg.clip_grad,
        ema_decay=cfg.ema_decay,
        grad_reducer=reducer,
    )
    all_reduce = ops.AllReduce() if env.distributed else None
    n_params = sum(int(p.size) for p in net.trainable_params())
    log.info(f"{n_params:,} parameters | optimizer {cfg.opt} | amp {cfg.amp_level} | loss scale {cfg.loss_scale_type}")

    start_epoch, global_step, best_top1 = 0, 0, -1.0
    resume = resolve_resume(cfg)
    if cfg.resume == "auto" and not resume:
        log.info(f"--resume auto: no checkpoint in {out}; starting from scratch")
    if resume:
        meta = restore_train_state(train_step, resume)
        start_epoch, global_step = int(meta["epoch"]), int(meta["global_step"])
        best_top1 = meta.get("best_top1", -1.0)
        log.info(f"resumed from {resume}: epoch {start_epoch} done, global step {global_step}")
        if start_epoch * steps != global_step:
            raise CheckpointError(
                f"{resume} stopped at step {global_step}, but {start_epoch} epochs of {steps} steps make "
                f"{start_epoch * steps}: the data or batch size changed since it was written"
            )

    metrics = MetricsLog(os.path.join(out, METRICS_FILE)) if env.is_main else None
    if metrics:  # one continuous history: what an interrupted run logged after its checkpoint is dropped
        metrics.truncate(global_step)
    total_steps = cfg.epochs * steps
    last_val: Dict[str, float] = {}
    timed_steps, timed_seconds = 0, 0.0
    net.set_train(True)
    for epoch in range(start_epoch, cfg.epochs):
        if epoch > 0:  # epoch 0's pipeline was built above to count the steps
            train_ds, _ = create_dataset(epoch_config(cfg, epoch), cfg.train_split, True, env.rank_size, env.rank_id)
        window_loss, window_n, skipped = 0.0, 0, 0
        t_window = time.perf_counter()
        for i, (images, labels) in enumerate(train_ds.create_tuple_iterator(num_epochs=1)):
            t0 = time.perf_counter()
            loss, finite, scale = train_step(images, labels)
            loss_value = float(loss.asnumpy())
            dt = time.perf_counter() - t0
            if global_step > start_epoch * steps:  # the first step of a process pays the compilation
                timed_steps, timed_seconds = timed_steps + 1, timed_seconds + dt
            if bool(finite.asnumpy()):
                window_loss, window_n = window_loss + loss_value, window_n + 1
            else:
                skipped += 1
                log.info(f"step {global_step}: gradients overflowed at loss scale {float(scale.asnumpy()):g}; skipped")
            lr_now = float(lrs[min(global_step, total_steps - 1)])
            global_step += 1
            if (i + 1) % cfg.log_interval == 0 or i + 1 == steps:
                elapsed = time.perf_counter() - t_window
                speed = global_batch * timed_steps / timed_seconds if timed_seconds > 0 else float("nan")
                eta = (total_steps - global_step) * (timed_seconds / timed_steps) if timed_steps else float("nan")
                mean_loss = window_loss / window_n if window_n else float("nan")
                log.info(
                    f"epoch {epoch + 1}/{cfg.epochs} step {i + 1}/{steps} | loss {mean_loss:.4f} | lr {lr_now:.3e}"
                    f" | {speed:.1f} img/s | left {format_seconds(eta) if eta == eta else '?'}"
                    f" | {elapsed:.1f}s"
                )
                if metrics:
                    metrics.write(
                        {
                            "kind": "train",
                            "epoch": epoch + 1,
                            "step": global_step,
                            "epoch_float": global_step / steps,
                            "loss": mean_loss,
                            "lr": lr_now,
                            "images_per_sec": speed,
                            "skipped_steps": skipped,
                        }
                    )
                window_loss, window_n, t_window = 0.0, 0, time.perf_counter()
        done = epoch + 1
        if done % cfg.eval_interval == 0 or done == cfg.epochs:
            last_val = _validate(cfg, env, net, train_step, all_reduce)
            log.info(
                f"epoch {done} validation: top-1 {last_val['top1']:.2f}% top-5 {last_val['top5']:.2f}% "
                f"loss {last_val['loss']:.4f} on {last_val['num_images']} images "
                f"({last_val['images_per_sec']:.1f} img/s)"
            )
            if metrics:
                metrics.write({"kind": "val", "epoch": done, "step": global_step, **last_val})
        is_best = bool(last_val) and last_val["top1"] > best_top1 and done % cfg.eval_interval == 0
        if is_best:
            best_top1 = last_val["top1"]
        if env.is_main and (done % cfg.save_interval == 0 or done == cfg.epochs or is_best):
            meta = {"epoch": done, "global_step": global_step, "best_top1": best_top1}
            params = train_step.parameters_dict()
            if done % cfg.save_interval == 0 or done == cfg.epochs:
                path = os.path.join(out, f"{cfg.model}_epoch{done}.ckpt")
                save_checkpoint(params, path, meta)
                rotate_checkpoints(out, cfg.model, cfg.keep_checkpoints)
                log.info(f"saved {path}")
            if is_best:
                save_checkpoint(params, os.path.join(out, f"{cfg.model}_best.ckpt"), meta)
                log.info(f"new best top-1 {best_top1:.2f}%: saved {cfg.model}_best.ckpt")
    if metrics and os.path.exists(metrics.path):
        plot_curves(metrics.path, os.path.join(out, CURVES_FILE))
    # Data-parallel ranks must end with identical weights; the digest makes that checkable from the logs.
    log.info(f"weights sha256 {weights_digest(net)}")
    result = {**last_val, "best_top1": best_top1, "global_step": global_step}
    log.info(f"done: {result}")
    return result


def resolve_resume(cfg: Config) -> Optional[str]:
    """The checkpoint ``--resume`` points at (``auto``: the newest in ``output_dir``), or None.

    Args:
        cfg: resolved config.
    """
    if cfg.resume == "auto":
        return latest_checkpoint(cfg.output_dir, cfg.model)
    return cfg.resume or None
