"""Shared layers: the ACmix core cell and its attention variants."""

from .acmix import ACmix, compose_conv_path, position_map, shift_kernel
from .local_attention import blocked_local_attention, reflect_indices, unfold_local_attention

__all__ = [
    "ACmix",
    "compose_conv_path",
    "position_map",
    "shift_kernel",
    "blocked_local_attention",
    "reflect_indices",
    "unfold_local_attention",
]
