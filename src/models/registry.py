"""The model registry: ``@register_model`` on a factory, then ``create_model(name, **kwargs)``."""

from __future__ import annotations

import difflib
from typing import Callable, Dict, List

from mindspore import nn

__all__ = ["register_model", "create_model", "list_models", "is_model"]

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
