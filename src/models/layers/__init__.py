"""Shared layers: the ACmix core cell and its attention variants."""

from .acmix import ACmix, position_map
from .conv_path import acmix_conv_path, build_conv_path, compose_conv_path, shift_kernel
from .group_conv import grouped_conv2d
from .local_attention import blocked_local_attention, reflect_indices, unfold_local_attention

__all__ = [
    "ACmix",
    "acmix_conv_path",
    "build_conv_path",
    "compose_conv_path",
    "grouped_conv2d",
    "position_map",
    "shift_kernel",
    "blocked_local_attention",
    "reflect_indices",
    "unfold_local_attention",
]
