"""The figures the models are measured against: the published and the official code's, used by the tools and tests.

``params_paper`` / ``flops_paper`` are the published figures (FLOPs = multiply-adds at 224x224, 1000 classes);
``params_official`` / ``flops_official`` what the official PyTorch code gives for the same configuration (only
ResNet and Swin have official code); ``top1`` the paper's ImageNet top-1.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional

__all__ = ["ModelReference", "REFERENCE"]


class ModelReference(NamedTuple):
    """Published and official figures of one model.

    Args:
        pattern: the attention pattern.
        params_paper: published parameter count.
        flops_paper: published multiply-adds.
        top1: published ImageNet top-1 (%).
        params_official: exact count of the official code, if it exists.
        flops_official: multiply-adds of the official code, if it exists.
    """

    pattern: str
    params_paper: float
    flops_paper: float
    top1: float
    params_official: Optional[int] = None
    flops_official: Optional[float] = None


REFERENCE: Dict[str, ModelReference] = {
    "acmix_resnet26": ModelReference("sliding window", 10.6e6, 2.3e9, 76.1, 10_487_816, 2.22e9),
    "acmix_resnet38": ModelReference("sliding window", 14.6e6, 2.9e9, 77.4, 14_410_896, 2.86e9),
    "acmix_resnet50": ModelReference("sliding window", 18.6e6, 3.6e9, 77.8, 18_333_976, 3.50e9),
    "acmix_san10": ModelReference("patchwise", 12.1e6, 1.9e9, 77.6),
    "acmix_san15": ModelReference("patchwise", 16.6e6, 2.7e9, 78.4),
    "acmix_san19": ModelReference("patchwise", 21.2e6, 3.4e9, 78.7),
    "acmix_pvt_tiny": ModelReference("global (spatial reduction)", 13e6, 2.0e9, 78.0),
    "acmix_pvt_small": ModelReference("global (spatial reduction)", 25e6, 3.9e9, 81.7),
    "acmix_swin_tiny": ModelReference("shifted window", 30e6, 4.6e9, 81.9, 28_649_908, 4.65e9),
    "acmix_swin_small": ModelReference("shifted window", 51e6, 9.0e9, 83.5, 50_345_080, 9.00e9),
}
