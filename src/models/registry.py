"""The model registry: ``@register_model(ModelConfig(...))`` on a factory, then ``create_model(name, **kwargs)``.

Each registered model carries a :class:`ModelConfig` next to its factory: the preprocessing it was trained with
(input size, mean, std, crop fraction, interpolation), whether its input size is fixed at construction, and the
published and official figures it is measured against.  ``create_model`` also gives the downstream views of a
backbone, as timm and MindCV do: ``num_classes=0`` (pooled features, no head) and ``features_only=True`` (the
stage outputs at strides 4, 8, 16, 32, see :class:`FeatureExtractor`).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mindspore import Tensor, nn

__all__ = [
    "ModelConfig",
    "FeatureExtractor",
    "register_model",
    "create_model",
    "create_model_from_config",
    "get_model_config",
    "list_models",
    "is_model",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a user of a registered model needs besides its weights.

    Args:
        pattern: the ACmix attention pattern of the model.
        input_size: (channels, height, width) the model is trained and evaluated at.
        fixed_input_size: the model is built for one input size (``img_size``), e.g. window masks or position
            tables; convolutional hosts take any size.
        mean: per-channel mean of the RGB input in [0, 1].
        std: per-channel standard deviation.
        crop_pct: evaluation centre crop: resize the short side to ``size / crop_pct``, crop ``size``.
        interpolation: resize filter, ``"bilinear"`` or ``"bicubic"``.
        classifier: name of the classification head cell (dropped by ``num_classes=0``).
        params_paper: published parameter count.
        flops_paper: published multiply-adds at 224x224, 1000 classes.
        top1: published ImageNet top-1 (%).
        params_official: exact parameter count of the official code, where it exists.
        flops_official: multiply-adds of the official code, where it exists.
    """

    pattern: str
    input_size: Tuple[int, int, int] = (3, 224, 224)
    fixed_input_size: bool = False
    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    classifier: str = "fc"
    params_paper: Optional[float] = None
    flops_paper: Optional[float] = None
    top1: Optional[float] = None
    params_official: Optional[int] = None
    flops_official: Optional[float] = None

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of the fields."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


_MODELS: Dict[str, Callable[..., nn.Cell]] = {}
_CONFIGS: Dict[str, ModelConfig] = {}


def register_model(cfg: Optional[ModelConfig] = None):
    """Decorator registering a model factory under its function name, with its :class:`ModelConfig`.

    ``@register_model(ModelConfig(...))``; a bare ``@register_model`` registers a model with a default config
    (ImageNet preprocessing at 224, any input size), e.g. for a user's own variant.

    Args:
        cfg: the model's config.
    """

    def add(fn: Callable[..., nn.Cell], config: ModelConfig) -> Callable[..., nn.Cell]:
        name = fn.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        _CONFIGS[name] = config
        fn.default_cfg = config
        return fn

    if callable(cfg) and not isinstance(cfg, ModelConfig):  # bare @register_model
        return add(cfg, ModelConfig(pattern="unspecified"))
    return lambda fn: add(fn, cfg or ModelConfig(pattern="unspecified"))


def list_models(pattern: str = "") -> List[str]:
    """Sorted names of the registered models, filtered by a shell-style pattern (``"acmix_swin*"``).

    Args:
        pattern: ``fnmatch`` pattern; empty lists every model.
    """
    return sorted(n for n in _MODELS if not pattern or fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model.

    Args:
        name: registry name.
    """
    return name in _MODELS


def _check_name(name: str) -> None:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} Registered models: {', '.join(list_models())}")


def get_model_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` registered with a model.

    Args:
        name: registry name.
    """
    _check_name(name)
    return _CONFIGS[name]


class FeatureExtractor(nn.Cell):
    """A backbone's stage outputs as a tuple of channels-first maps (``create_model(..., features_only=True)``).

    The backbone's ``forward_stages(x)`` gives one map per stage at strides 4, 8, 16, 32; ``out_indices`` picks
    which are returned.  Parameter names are the backbone's own (no prefix), so its checkpoints load as they are.

    Args:
        backbone: a model with ``forward_stages`` and ``feature_info`` (built with ``num_classes=0``).
        out_indices: stages to return, in order, each in 0..3.
    """

    def __init__(self, backbone: nn.Cell, out_indices: Sequence[int] = (0, 1, 2, 3)) -> None:
        super().__init__(auto_prefix=False)
        stages = len(backbone.feature_info)
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(not 0 <= i < stages for i in out_indices):
            raise ValueError(f"out_indices must be a non-empty list of stages in 0..{stages - 1}, got {out_indices}")
        self.backbone = backbone
        self.out_indices = out_indices
        self.feature_info = [backbone.feature_info[i] for i in out_indices]

    def construct(self, x: Tensor) -> Tuple[Tensor, ...]:
        maps = self.backbone.forward_stages(x)
        return tuple(maps[i] for i in self.out_indices)


def create_model(
    name: str,
    pretrained: Optional[str] = None,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    **kwargs,
) -> nn.Cell:
    """Build a registered model.

    Args:
        name: registry name, e.g. ``"acmix_resnet50"``.
        pretrained: path of a converted or trained ``.ckpt`` to load strictly; its classifier is left out when the
            model has none (``num_classes=0``, ``features_only``), any other mismatch is an error.
        features_only: return a :class:`FeatureExtractor` giving the stage maps instead of logits.
        out_indices: stages a ``features_only`` model returns (0..3 = strides 4, 8, 16, 32).
        **kwargs: ``num_classes`` (0 = pooled features, no head) and architecture overrides of the factory.
    """
    _check_name(name)
    if features_only:
        kwargs["num_classes"] = 0
    model = _MODELS[name](**kwargs)
    if pretrained:
        from ..checkpoint import load_model_weights  # noqa: PLC0415  (keeps the registry free of training code)

        skip = (_CONFIGS[name].classifier + ".",) if kwargs.get("num_classes", 1) == 0 else ()
        load_model_weights(model, pretrained, skip_prefixes=skip)
    return FeatureExtractor(model, out_indices) if features_only else model


def create_model_from_config(cfg) -> nn.Cell:
    """Build ``cfg.model`` with the recipe's ``num_classes``, ``in_chans``, ``drop_path_rate``, ``img_size``.

    ``img_size`` is passed only to models whose :class:`ModelConfig` says their input size is fixed at
    construction (transformers with window masks or position tables); convolutional hosts take any input size.
    ``model_kwargs`` are passed as they are, so a keyword the model does not know is the model's ``TypeError``.

    Args:
        cfg: config with ``model``, ``num_classes``, ``in_chans``, ``drop_path_rate``, ``img_size``,
            ``model_kwargs``.
    """
    kwargs = {"num_classes": cfg.num_classes, "in_chans": cfg.in_chans, **dict(cfg.model_kwargs)}
    if cfg.drop_path_rate is not None:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    if get_model_config(cfg.model).fixed_input_size:
        kwargs.setdefault("img_size", cfg.img_size)
    return create_model(cfg.model, **kwargs)
