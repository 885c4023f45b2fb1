"""Models: importing this package registers every backbone."""

from . import acmix_pvt, acmix_resnet, acmix_san, acmix_swin  # noqa: F401  (registers the families)
from .registry import (
    FeatureExtractor,
    ModelConfig,
    create_model,
    create_model_from_config,
    get_model_config,
    is_model,
    list_models,
    register_model,
)

__all__ = [
    "FeatureExtractor",
    "ModelConfig",
    "create_model",
    "create_model_from_config",
    "get_model_config",
    "is_model",
    "list_models",
    "register_model",
]
