"""The learning-rate schedule and weight-decay groups of src/optim.py: the official ACmix-ResNet settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from src.config import parse_config
from src.optim import create_optimizer, lr_schedule, param_groups, scaled_lr, warmup_cosine_lr


def _official_lr(lr: float, epochs: int, steps: int) -> np.ndarray:
    """LeapLabTHU/ACmix ResNet/main.py, adjust_learning_rate_iter_warmup with lr_scheduler 'cosine', restated."""
    out = []
    for epoch in range(epochs):
        for step in range(steps):
            if epoch < 5:
                out.append(lr / 4 + 3 * lr / 4 * (1 + step + epoch * steps) / (5.0 * steps))
            else:
                t = ((epoch - 5) * steps + step) / ((epochs - 5) * steps)
                out.append(0.5 * lr * (1 + math.cos(math.pi * t)))
    return np.array(out)


@pytest.mark.parametrize("global_batch", [128, 512])
def test_relative_warmup_start_follows_the_official_schedule(global_batch: int):
    cfg = parse_config(["--warmup_start_factor", "0.25", "--min_lr", "0", "--lr_base_batch", "128", "--epochs", "8"])
    steps = 6
    lrs = lr_schedule(cfg, global_batch, steps)
    peak = scaled_lr(cfg.lr, global_batch, cfg.lr_base_batch)
    official = _official_lr(peak, cfg.epochs, steps)
    warm = cfg.warmup_epochs * steps
    assert lrs.shape == official.shape
    assert lrs[0] == pytest.approx(cfg.warmup_start_factor * peak)  # the start keeps its ratio at any batch
    # warmup: the official step i is step i + 1 here; cosine: the same formula
    np.testing.assert_allclose(lrs[1:warm], official[: warm - 1], rtol=1e-6)
    np.testing.assert_allclose(lrs[warm:], official[warm:], rtol=1e-6, atol=1e-9)


def test_without_a_factor_the_warmup_starts_at_warmup_lr():
    cfg = parse_config(["--warmup_lr", "0.001", "--lr_base_batch", "256", "--epochs", "3", "--warmup_epochs", "1"])
    lrs = lr_schedule(cfg, 512, 4)
    expected = warmup_cosine_lr(0.2, cfg.min_lr, 0.001, 3, 1, 4)
    np.testing.assert_array_equal(lrs, expected)
    assert lrs[0] == pytest.approx(0.001)


@pytest.fixture(scope="module")
def small_resnet():
    from src.models import create_model

    return create_model("acmix_resnet26", num_classes=3, layers=(1, 1, 1, 1))


def test_weight_decay_params_all_decays_every_parameter(small_resnet):
    net = small_resnet
    params = net.trainable_params()
    groups = param_groups(params, 1e-4, "all")
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-4
    assert [p.name for p in groups[0]["params"]] == [p.name for p in params]
    decay, no_decay = param_groups(params, 1e-4)
    assert no_decay["weight_decay"] == 0.0 and len(decay["params"]) + len(no_decay["params"]) == len(params)
    exempt = {p.name for p in no_decay["params"]}
    assert any(n.endswith("rate1") for n in exempt) and any(n.endswith("gamma") for n in exempt)
    with pytest.raises(ValueError, match="weight_decay_params"):
        param_groups(params, 1e-4, "norms")


@pytest.mark.parametrize("which", ["weights", "all"])
def test_optimizer_decays_as_weight_decay_params_says(small_resnet, which: str):
    """What MindSpore's optimizer does with the groups: its per-parameter decay flags."""
    net = small_resnet
    cfg = parse_config(["--weight_decay_params", which])
    opt = create_optimizer(cfg, net.trainable_params(), np.full(4, 0.1, np.float32))
    flags = dict(zip((p.name for p in opt.parameters), opt.decay_flags))
    assert flags and set(flags) == {p.name for p in net.trainable_params()}
    norm_or_rate = [n for n in flags if n.endswith(("gamma", "beta", "rate1", "rate2", "bias"))]
    assert norm_or_rate and all(flags[n] == (which == "all") for n in norm_or_rate)
    assert all(flags[p.name] for p in net.trainable_params() if len(p.shape) >= 2)
