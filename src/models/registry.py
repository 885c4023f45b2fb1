"""The model registry: ``@register_model`` on a factory, then ``create_model(name, **kwargs)``."""

from __future__ import annotations

import difflib
from typing import Callable, Dict, List

from mindspore import nn

__all__ = ["register_model", "create_model", "create_model_from_config", "list_models", "is_model"]

_MODELS: Dict[str, Callable[..., nn.Cell]] = {}


def register_model(fn: Callable[..., nn.Cell]) -> Callable[..., nn.Cell]:
    """Register a model factory under its function name.

    Args:
        fn: factory taking keyword arguments (``num_classes`` and architecture overrides).
    """
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models() -> List[str]:
    """Sorted names of all registered models."""
    return sorted(_MODELS)


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model.

    Args:
        name: registry name.
    """
    return name in _MODELS


def create_model(name: str, **kwargs) -> nn.Cell:
    """Build a registered model.

    Args:
        name: registry name, e.g. ``"acmix_resnet50"``.
        **kwargs: ``num_classes`` and architecture overrides accepted by the factory.
    """
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} Registered models: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)


def create_model_from_config(cfg) -> nn.Cell:
    """Build ``cfg.model`` with the recipe's ``num_classes``, ``in_chans``, ``drop_path_rate``, ``img_size``.

    ``img_size`` is passed only to models that take it (transformers with position tables or fixed windows);
    convolutional hosts accept any input size.  ``model_kwargs`` are passed as they are, so a keyword the model
    does not know is the model's ``TypeError``.

    Args:
        cfg: config with ``model``, ``num_classes``, ``in_chans``, ``drop_path_rate``, ``img_size``,
            ``model_kwargs``.
    """
    kwargs = {"num_classes": cfg.num_classes, "in_chans": cfg.in_chans, **dict(cfg.model_kwargs)}
    if cfg.drop_path_rate is not None:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    if "img_size" in kwargs:
        return create_model(cfg.model, **kwargs)
    try:
        return create_model(cfg.model, img_size=cfg.img_size, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
    return create_model(cfg.model, **kwargs)
