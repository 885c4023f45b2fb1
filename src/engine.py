"""The compiled train step (loss scaling, overflow skipping, clipping, gradient averaging, EMA, an on-device loss
meter) and evaluation."""

from __future__ import annotations

import time
from typing import Dict, Iterable, Optional, Tuple

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
from mindspore import amp as ms_amp
from mindspore import dtype as mstype

__all__ = ["ClassificationLoss", "NetWithLoss", "TrainStep", "evaluate", "METER_PREFIX"]

METER_PREFIX = "meter."  # the loss meter's parameters: progress figures, not training state (never checkpointed)


class ClassificationLoss(nn.Cell):
    """Cross entropy with label smoothing for integer labels, or against soft targets (mixup/cutmix).

    Args:
        num_classes: number of classes.
        label_smoothing: smoothing of integer labels; soft targets are used as given (already smoothed).
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.on = 1.0 - label_smoothing + label_smoothing / num_classes
        self.off = label_smoothing / num_classes

    def construct(self, logits: Tensor, labels: Tensor) -> Tensor:
        logp = ops.log_softmax(logits.astype(mstype.float32), -1)
        if labels.ndim == 1:
            on = ops.full((), self.on, dtype=mstype.float32)
            off = ops.full((), self.off, dtype=mstype.float32)
            target = ops.one_hot(labels, self.num_classes, on, off)
        else:
            target = labels.astype(mstype.float32)
        return -(target * logp).sum(-1).mean()


class NetWithLoss(nn.Cell):
    """Model followed by the loss; keeps the model's parameter names (no prefix).

    Args:
        network: the model.
        loss_fn: loss on (logits, labels).
    """

    def __init__(self, network: nn.Cell, loss_fn: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.network = network
        self.loss_fn = loss_fn

    def construct(self, images: Tensor, labels: Tensor) -> Tensor:
        return self.loss_fn(self.network(images), labels)


_hyper_map = ops.HyperMap()


def _is_finite(grad: Tensor) -> Tensor:
    return ops.isfinite(grad).all()


def stacked_all_finite(grads: Tuple[Tensor, ...]) -> Tensor:
    """Whether every gradient is finite, as a scalar bool: one flag per gradient, stacked and reduced.

    Args:
        grads: the gradients.
    """
    return ops.stack(_hyper_map(_is_finite, grads)).all()


class TrainStep(nn.Cell):
    """One optimizer step: scaled loss and gradients, overflow check, loss-scale update, clipping, update, EMA.

    All state (optimizer moments and step, loss scale and its counter, EMA weights) lives in parameters of this
    cell, so one checkpoint of ``parameters_dict()`` resumes the run exactly.

    Dynamic loss scaling: a step whose gradients are not finite is skipped (no update, EMA untouched) and the
    scale is divided by 2; after ``scale_window`` finite steps in a row it is doubled.  With ``loss_scale_type``
    "fixed" the scale never changes but overflowing steps are still skipped; "none" is scale 1.  Finiteness is
    ``mindspore.amp.all_finite``, which also sees overflow on Ascend devices whose float mode saturates (an
    overflow there gives +-max, not inf/nan).

    The loss meter sums the losses of finite steps and counts finite and skipped steps in parameters on the
    device, so a training loop reads the loss only at its log points (:meth:`read_meter`), never after every
    step: no host synchronisation per step, and the same code under data sinking.

    Args:
        net_with_loss: model and loss.
        optimizer: optimizer over the model's trainable parameters.
        loss_scale: initial (or fixed) loss scale.
        dynamic: whether the scale adapts.
        scale_window: finite steps before the scale grows.
        clip_grad: max global norm of the gradients; 0 disables clipping.
        ema_decay: decay of the exponential moving average of the weights; 0 disables it.
        grad_reducer: averages gradients across data-parallel ranks (None on one device).
    """

    def __init__(
        self,
        net_with_loss: nn.Cell,
        optimizer: nn.Optimizer,
        loss_scale: float = 1.0,
        dynamic: bool = False,
        scale_window: int = 2000,
        clip_grad: float = 0.0,
        ema_decay: float = 0.0,
        grad_reducer: Optional[nn.Cell] = None,
    ) -> None:
        super().__init__(auto_prefix=False)
        self.net_with_loss = net_with_loss
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.scale = Parameter(Tensor(loss_scale, mstype.float32), name="loss_scale.value", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, mstype.int32), name="loss_scale.good_steps", requires_grad=False)
        self.dynamic = dynamic
        self.scale_window = scale_window
        self.clip_grad = clip_grad
        self.use_reducer = grad_reducer is not None
        self.grad_reducer = grad_reducer if grad_reducer is not None else nn.Identity()
        self.ema_decay = ema_decay
        self.hyper_map = ops.HyperMap()
        # On CPU, all_finite adds one flag per gradient with a single AddN, which graph-kernel fusion turns into
        # one generated kernel of ~100 inputs whose index expressions MindSpore 2.8's kernel compiler (AKG) does
        # not finish simplifying: the compilation hangs.  Stacking the flags keeps them out of one fused kernel.
        self.stack_finite = ms.get_context("device_target") == "CPU"
        if ema_decay > 0:
            ema_sources = [p for p in net_with_loss.get_parameters() if p.requires_grad or "moving_" in p.name]
            self.ema_sources = ParameterTuple(ema_sources)
            self.ema = ParameterTuple(
                [Parameter(p.data.copy(), name=f"ema.{p.name}", requires_grad=False) for p in ema_sources]
            )
        self.loss_sum = Parameter(Tensor(0.0, mstype.float32), name=f"{METER_PREFIX}loss_sum", requires_grad=False)
        self.finite_steps = Parameter(Tensor(0, mstype.int32), name=f"{METER_PREFIX}finite", requires_grad=False)
        self.skipped_steps = Parameter(Tensor(0, mstype.int32), name=f"{METER_PREFIX}skipped", requires_grad=False)

    def construct(self, images: Tensor, labels: Tensor):
        loss = self.net_with_loss(images, labels)
        scale = self.scale * 1.0  # the value this step uses (the parameter is updated below)
        sens = ops.fill(loss.dtype, loss.shape, 1.0) * scale.astype(loss.dtype)
        grads = self.grad(self.net_with_loss, self.weights)(images, labels, sens)
        if self.use_reducer:
            grads = self.grad_reducer(grads)
        inv = 1.0 / scale
        grads = self.hyper_map(ops.partial(_unscale, inv), grads)
        if self.stack_finite:
            finite = stacked_all_finite(grads)
        else:
            finite = ms_amp.all_finite(grads)
        loss = ops.depend(loss, self._update_meter(loss, finite))
        if self.dynamic:
            loss = ops.depend(loss, self._update_scale(finite))
        if finite:
            if self.clip_grad > 0:
                grads = ops.clip_by_global_norm(grads, self.clip_grad)
            loss = ops.depend(loss, self.optimizer(grads))
            if self.ema_decay > 0:
                loss = ops.depend(loss, self._update_ema())
        return loss, finite, scale

    def _update_scale(self, finite: Tensor):
        grown = ops.select(self.good_steps >= self.scale_window - 1, self.scale * 2.0, self.scale)
        new_scale = ops.select(finite, grown, ops.maximum(self.scale / 2.0, ops.ones((), mstype.float32)))
        counter = ops.select(
            finite, ops.select(self.good_steps >= self.scale_window - 1, 0, self.good_steps + 1), 0
        ).astype(mstype.int32)
        ops.assign(self.scale, new_scale)
        return ops.assign(self.good_steps, counter)

    def _update_meter(self, loss: Tensor, finite: Tensor):
        counted = ops.select(finite, loss.astype(mstype.float32), ops.zeros((), mstype.float32))
        ops.assign_add(self.loss_sum, counted)
        ops.assign_add(self.finite_steps, finite.astype(mstype.int32))
        return ops.assign_add(self.skipped_steps, 1 - finite.astype(mstype.int32))

    def read_meter(self) -> Tuple[float, int, int]:
        """(mean loss of the finite steps, finite steps, skipped steps) since the last read, and reset the meter.

        The one host synchronisation of a log point.
        """
        meters = (self.loss_sum, self.finite_steps, self.skipped_steps)
        values = [p.asnumpy() for p in meters]
        for p, v in zip(meters, values):
            p.set_data(Tensor(np.zeros_like(v)))
        loss_sum, finite, skipped = float(values[0]), int(values[1]), int(values[2])
        return (loss_sum / finite if finite else float("nan")), finite, skipped

    def state_parameters(self) -> Dict[str, Parameter]:
        """Every parameter a checkpoint must hold to resume exactly: ``parameters_dict()`` without the meter."""
        return {k: v for k, v in self.parameters_dict().items() if not k.startswith(METER_PREFIX)}

    def _update_ema(self):
        return self.hyper_map(ops.partial(_ema_update, self.ema_decay), self.ema, self.ema_sources)


def _unscale(inv: Tensor, grad: Tensor) -> Tensor:
    return grad * inv.astype(grad.dtype)


def _ema_update(decay: float, ema: Parameter, source: Parameter):
    return ops.assign(ema, ema * decay + source.astype(ema.dtype) * (1.0 - decay))


def evaluate(
    network: nn.Cell, batches: Iterable, num_classes: int, all_reduce: Optional[nn.Cell] = None
) -> Dict[str, float]:
    """Top-1, top-5, mean loss, number of images and images/second of ``network`` over ``batches``.

    Counts (not per-batch averages) are accumulated, so uneven last batches and uneven shards weigh correctly;
    with ``all_reduce`` the counts are summed over all ranks before dividing.

    Args:
        network: model in eval mode, compiled on first call.
        batches: iterable of (images, labels) tensors with integer labels.
        num_classes: number of classes (top-5 degrades to top-k with k = min(5, num_classes)).
        all_reduce: sum over ranks (``ops.AllReduce``), or None on one process.
    """
    network.set_train(False)
    k = min(5, num_classes)
    sums = np.zeros(4, np.float64)  # top1 correct, top5 correct, summed loss, images
    start, timed_images = None, 0
    first_start = time.perf_counter()
    for images, labels in batches:
        logits = network(images).asnumpy().astype(np.float64)
        y = labels.asnumpy().astype(np.int64)
        if start is None:  # the first batch pays the compilation
            start = time.perf_counter()
        else:
            timed_images += len(y)
        top = np.argsort(-logits, axis=1)[:, :k]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        sums += [
            (top[:, 0] == y).sum(),
            (top == y[:, None]).any(axis=1).sum(),
            -logp[np.arange(len(y)), y].sum(),
            len(y),
        ]
    if timed_images == 0:  # a single batch: its time (compilation included) is all there is
        timed_images, start = int(sums[3]), first_start
    elapsed = time.perf_counter() - start if start is not None else 0.0
    if all_reduce is not None:
        sums = all_reduce(Tensor(sums.astype(np.float32))).asnumpy().astype(np.float64)
    n = max(sums[3], 1.0)
    return {
        "top1": 100.0 * sums[0] / n,
        "top5": 100.0 * sums[1] / n,
        "loss": sums[2] / n,
        "num_images": int(sums[3]),
        "images_per_sec": timed_images / elapsed if elapsed > 0 else float("nan"),
    }
