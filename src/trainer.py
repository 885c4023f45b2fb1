"""The training run behind ``train.py``, in named steps: build the run, resume it, train an epoch, end the epoch
(validate, keep the best, save), finish.

An epoch runs in chunks of steps with a log point after each: the train step keeps its loss meter on the device
and the loop reads it only there.  On Ascend and GPU the chunks are data sinks (``mindspore.data_sink``: the
pipeline feeds the device queue and the step runs ``sink_size`` times per call); on CPU, where MindSpore does
not sink, a Python loop calls the compiled step per batch.  docs/accelerators.md says which parts only an
accelerator runs.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

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

__all__ = [
    "train",
    "build_network",
    "epoch_config",
    "weights_digest",
    "previous_run_files",
    "sink_enabled",
    "sink_steps",
    "build_train_step",
    "ThroughputMeter",
]

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


def sink_enabled(setting: str, device_target: str) -> bool:
    """Whether training feeds the device through data sinking: ``auto`` and ``on`` on Ascend and GPU; never on
    CPU, where MindSpore does not sink (``on`` falls back there, with a log line).

    Args:
        setting: the ``dataset_sink_mode`` key ("auto", "on" or "off").
        device_target: "CPU", "GPU" or "Ascend".
    """
    return setting != "off" and device_target in ("Ascend", "GPU")


def sink_steps(steps_per_epoch: int, sink_size: int, log_interval: int) -> int:
    """Steps per chunk (one log point each; one data sink on an accelerator).

    A chunk never spans two epochs, so checkpoints and resume stay at epoch boundaries: ``sink_size`` must divide
    the epoch; 0 picks the largest divisor of the epoch not above ``log_interval``.

    Args:
        steps_per_epoch: optimizer steps per epoch.
        sink_size: the ``sink_size`` key (0 = automatic).
        log_interval: the ``log_interval`` key.
    """
    if sink_size:
        if steps_per_epoch % sink_size:
            raise ConfigError(
                f"sink_size {sink_size} does not divide the {steps_per_epoch} steps of an epoch; "
                "choose a divisor, or 0 for the largest one up to log_interval"
            )
        return sink_size
    return max(d for d in range(1, min(log_interval, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


class ThroughputMeter:
    """Images per second and time left, from the wall time between log points.

    The first chunk a process runs pays the graph compilation and is left out of the rate.

    Args:
        images_per_step: the global batch.
    """

    def __init__(self, images_per_step: int) -> None:
        self.images_per_step = images_per_step
        self.steps, self.seconds, self.chunks = 0, 0.0, 0
        self.started = time.perf_counter()

    def start(self) -> None:
        """Start the clock for the next chunk (at an epoch's start: validation and saving are not training time)."""
        self.started = time.perf_counter()

    def lap(self, steps: int) -> float:
        """Close a chunk of ``steps`` steps (call after the log point's synchronisation); returns its seconds.

        Args:
            steps: steps the chunk ran.
        """
        now = time.perf_counter()
        elapsed, self.started = now - self.started, now
        self.chunks += 1
        if self.chunks > 1:
            self.steps, self.seconds = self.steps + steps, self.seconds + elapsed
        return elapsed

    @property
    def images_per_sec(self) -> float:
        return self.images_per_step * self.steps / self.seconds if self.seconds > 0 else float("nan")

    def seconds_left(self, steps_left: int) -> float:
        """Estimated time for ``steps_left`` more steps (nan before the rate is known).

        Args:
            steps_left: steps still to run.
        """
        return steps_left * self.seconds / self.steps if self.steps else float("nan")


@dataclass
class _Run:
    """What the named steps of a training run share."""

    cfg: Config
    env: RunEnv
    log: Any
    net: Any
    train_step: Any
    lrs: Any
    steps: int  # per epoch
    chunk: int  # steps per log point (and per sink)
    sink: bool
    first_dataset: Any  # epoch 0's pipeline, built to count the steps
    metrics: Optional[MetricsLog]
    all_reduce: Any
    start_epoch: int = 0
    global_step: int = 0
    best_top1: float = -1.0
    last_val: Dict[str, float] = field(default_factory=dict)

    @property
    def global_batch(self) -> int:
        return self.cfg.batch_size * self.env.rank_size


def train(cfg: Config) -> Dict[str, float]:
    """Train ``cfg.model`` as the config says; returns the last validation result and the best top-1.

    Args:
        cfg: resolved config (see ``src/config.py``).
    """
    stale = _claim_output_dir(cfg)
    run = _build_run(cfg, stale)
    _resume(run)
    feed = _SinkFeed(run) if run.sink else _LoopFeed(run)
    meter = ThroughputMeter(run.global_batch)
    run.train_step.set_train(True)
    for epoch in range(run.start_epoch, cfg.epochs):
        _train_epoch(run, feed, meter, epoch)
        _end_epoch(run, epoch + 1)
    return _finish(run)


def _build_run(cfg: Config, stale: List[str]) -> _Run:
    """Device, logs, data checks, model, optimizer and the compiled train step (compiled at its first call)."""
    env = init_env(cfg.device_target, cfg.mode, cfg.seed, cfg.distribute, cfg.graph_kernel)
    from mindspore import ops

    from .data import check_dataset, create_dataset
    from .optim import scaled_lr

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
    sink = sink_enabled(cfg.dataset_sink_mode, env.device_target)
    if cfg.dataset_sink_mode == "on" and not sink:
        log.info(f"dataset_sink_mode on: MindSpore sinks data only on Ascend and GPU; {env.device_target} trains "
                 "without sinking")  # fmt: skip
    chunk = sink_steps(steps, cfg.sink_size, cfg.log_interval) if sink else min(cfg.log_interval, steps)
    global_batch = cfg.batch_size * env.rank_size
    base_lr = scaled_lr(cfg.lr, global_batch, cfg.lr_base_batch)
    log.info(
        f"model {cfg.model} | {info.num_images} training images, {info.num_classes} classes | batch {cfg.batch_size}"
        f" per device x {env.rank_size} device(s) = {global_batch} | lr {cfg.lr} for {cfg.lr_base_batch or 'any'}"
        f" images -> {base_lr:.6g} | {steps} steps/epoch x {cfg.epochs} epochs"
        f" | {'data sinking, ' if sink else ''}{chunk} steps per log point"
    )

    net = build_network(cfg)
    train_step, lrs = build_train_step(cfg, net, steps, env.rank_size)
    n_params = sum(int(p.size) for p in net.trainable_params())
    log.info(f"{n_params:,} parameters | optimizer {cfg.opt} | amp {cfg.amp_level} | loss scale {cfg.loss_scale_type}")
    metrics = MetricsLog(os.path.join(out, METRICS_FILE)) if env.is_main else None
    all_reduce = ops.AllReduce() if env.distributed else None
    return _Run(cfg, env, log, net, train_step, lrs, steps, chunk, sink, train_ds, metrics, all_reduce)


def build_train_step(cfg: Config, net, steps_per_epoch: int, rank_size: int = 1):
    """(the compiled-on-first-call train step of ``net``, the per-step learning rates) as the recipe says.

    Args:
        cfg: resolved config (optimizer, schedule, loss, loss scale, clipping, EMA keys).
        net: the model (from :func:`build_network`).
        steps_per_epoch: optimizer steps per epoch (the schedule is per step).
        rank_size: data-parallel devices (> 1 adds the gradient all-reduce).
    """
    from mindspore import nn

    from .engine import ClassificationLoss, NetWithLoss, TrainStep
    from .optim import create_optimizer, lr_schedule

    lrs = lr_schedule(cfg, cfg.batch_size * rank_size, steps_per_epoch)
    optimizer = create_optimizer(cfg, net.trainable_params(), lrs)
    reducer = nn.DistributedGradReducer(optimizer.parameters, True, rank_size) if rank_size > 1 else None
    train_step = TrainStep(
        NetWithLoss(net, ClassificationLoss(cfg.num_classes, cfg.label_smoothing)),
        optimizer,
        loss_scale=1.0 if cfg.loss_scale_type == "none" else cfg.loss_scale,
        dynamic=cfg.loss_scale_type == "dynamic",
        scale_window=cfg.loss_scale_window,
        clip_grad=cfg.clip_grad,
        ema_decay=cfg.ema_decay,
        grad_reducer=reducer,
    )
    return train_step, lrs


def _resume(run: _Run) -> None:
    """Restore the train step from ``--resume`` and cut the metrics log back to the step it continues from."""
    cfg = run.cfg
    path = resolve_resume(cfg)
    if cfg.resume == "auto" and not path:
        run.log.info(f"--resume auto: no checkpoint in {cfg.output_dir}; starting from scratch")
    if path:
        meta = restore_train_state(run.train_step, path)
        run.start_epoch, run.global_step = int(meta["epoch"]), int(meta["global_step"])
        run.best_top1 = meta.get("best_top1", -1.0)
        run.log.info(f"resumed from {path}: epoch {run.start_epoch} done, global step {run.global_step}")
        if run.start_epoch * run.steps != run.global_step:
            raise CheckpointError(
                f"{path} stopped at step {run.global_step}, but {run.start_epoch} epochs of {run.steps} steps make "
                f"{run.start_epoch * run.steps}: the data or batch size changed since it was written"
            )
    if run.metrics:  # one continuous history: what an interrupted run logged after its checkpoint is dropped
        run.metrics.truncate(run.global_step)


class _LoopFeed:
    """Plain feeding (CPU): one pipeline per epoch, seeded by (seed, epoch), so a resumed run sees exactly the
    batches an uninterrupted one would; the compiled step is called per batch without reading its outputs."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.batches = None

    def start_epoch(self, epoch: int) -> None:
        from .data import create_dataset

        run, cfg = self.run, self.run.cfg
        if epoch == 0:
            dataset = run.first_dataset
        else:
            dataset, _ = create_dataset(epoch_config(cfg, epoch), cfg.train_split, True, run.env.rank_size,
                                        run.env.rank_id)  # fmt: skip
        self.batches = iter(dataset.create_tuple_iterator(num_epochs=1))

    def run_steps(self, n: int) -> None:
        for _ in range(n):
            images, labels = next(self.batches)
            self.run.train_step(images, labels)


class _SinkFeed:
    """Data sinking (Ascend, GPU): one pipeline for the rest of the run feeds the device queue, and
    ``mindspore.data_sink`` runs ``chunk`` steps per call.

    The pipeline is built once (each new one is a new device queue and a new graph), seeded for the epoch the
    process starts at: a resumed run restores every parameter and the step exactly, but its batches after the
    resume point are a different draw than an uninterrupted run's (docs/accelerators.md).
    """

    def __init__(self, run: _Run) -> None:
        import mindspore as ms

        from .data import create_dataset

        cfg = run.cfg
        dataset = run.first_dataset
        if run.start_epoch:
            dataset, _ = create_dataset(epoch_config(cfg, run.start_epoch), cfg.train_split, True,
                                        run.env.rank_size, run.env.rank_id)  # fmt: skip
        self.chunk = run.chunk
        self.sink = ms.data_sink(run.train_step, dataset, sink_size=run.chunk, jit_config=ms.JitConfig())

    def start_epoch(self, epoch: int) -> None:
        pass  # the sunk pipeline runs on from one epoch into the next

    def run_steps(self, n: int) -> None:
        if n != self.chunk:
            raise RuntimeError(f"a sink runs {self.chunk} steps, asked for {n}")
        self.sink()


def _train_epoch(run: _Run, feed, meter: ThroughputMeter, epoch: int) -> None:
    """One epoch in chunks of ``run.chunk`` steps, with a log point (and a metrics record) after each."""
    cfg = run.cfg
    feed.start_epoch(epoch)
    meter.start()
    total_steps = cfg.epochs * run.steps
    done = 0
    while done < run.steps:
        n = min(run.chunk, run.steps - done)
        feed.run_steps(n)
        done, run.global_step = done + n, run.global_step + n
        mean_loss, _, skipped = run.train_step.read_meter()  # the chunk's one host synchronisation
        elapsed = meter.lap(n)
        lr_now = float(run.lrs[run.global_step - 1])
        left = meter.seconds_left(total_steps - run.global_step)
        if skipped:
            scale = float(run.train_step.scale.asnumpy())
            run.log.info(f"{skipped} step(s) overflowed and were skipped; loss scale now {scale:g}")
        run.log.info(
            f"epoch {epoch + 1}/{cfg.epochs} step {done}/{run.steps} | loss {mean_loss:.4f} | lr {lr_now:.3e}"
            f" | {meter.images_per_sec:.1f} img/s | left {format_seconds(left) if left == left else '?'}"
            f" | {elapsed:.1f}s"
        )
        if run.metrics:
            run.metrics.write(
                {
                    "kind": "train",
                    "epoch": epoch + 1,
                    "step": run.global_step,
                    "epoch_float": run.global_step / run.steps,
                    "loss": mean_loss,
                    "lr": lr_now,
                    "images_per_sec": meter.images_per_sec,
                    "skipped_steps": skipped,
                }
            )


def _end_epoch(run: _Run, done: int) -> None:
    """Validate (every ``eval_interval`` epochs and at the end), keep the best, save (rank 0 only)."""
    cfg, log = run.cfg, run.log
    validated = done % cfg.eval_interval == 0 or done == cfg.epochs
    if validated:
        run.last_val = _validate(cfg, run.env, run.net, run.train_step, run.all_reduce)
        val = run.last_val
        log.info(
            f"epoch {done} validation: top-1 {val['top1']:.2f}% top-5 {val['top5']:.2f}% loss {val['loss']:.4f}"
            f" on {val['num_images']} images ({val['images_per_sec']:.1f} img/s)"
        )
        if run.metrics:
            run.metrics.write({"kind": "val", "epoch": done, "step": run.global_step, **val})
    is_best = validated and done % cfg.eval_interval == 0 and run.last_val["top1"] > run.best_top1
    if is_best:
        run.best_top1 = run.last_val["top1"]
    periodic = done % cfg.save_interval == 0 or done == cfg.epochs
    if not run.env.is_main or not (periodic or is_best):
        return
    meta = {"epoch": done, "global_step": run.global_step, "best_top1": run.best_top1}
    params = run.train_step.state_parameters()
    if periodic:
        path = os.path.join(cfg.output_dir, f"{cfg.model}_epoch{done}.ckpt")
        save_checkpoint(params, path, meta)
        rotate_checkpoints(cfg.output_dir, cfg.model, cfg.keep_checkpoints)
        log.info(f"saved {path}")
    if is_best:
        save_checkpoint(params, os.path.join(cfg.output_dir, f"{cfg.model}_best.ckpt"), meta)
        log.info(f"new best top-1 {run.best_top1:.2f}%: saved {cfg.model}_best.ckpt")


def _finish(run: _Run) -> Dict[str, float]:
    """The plot, the weights digest (ranks must agree) and the result."""
    if run.metrics and os.path.exists(run.metrics.path):
        plot_curves(run.metrics.path, os.path.join(run.cfg.output_dir, CURVES_FILE))
    run.log.info(f"weights sha256 {weights_digest(run.net)}")
    result = {**run.last_val, "best_top1": run.best_top1, "global_step": run.global_step}
    run.log.info(f"done: {result}")
    return result


def resolve_resume(cfg: Config) -> Optional[str]:
    """The checkpoint ``--resume`` points at (``auto``: the newest in ``output_dir``), or None.

    Args:
        cfg: resolved config.
    """
    if cfg.resume == "auto":
        return latest_checkpoint(cfg.output_dir, cfg.model)
    return cfg.resume or None
