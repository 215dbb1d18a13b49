"""NumPy/CuPy reference of DeepFill v1's contextual attention: the correctness oracle of `deepfill_min`."""

from .backend import get_array_module, gpu_available, to_numpy
from .contextual_attention import (
    attention_weights,
    contextual_attention,
    diagonal_sum,
    fuse_scores,
    masked_softmax,
    matching_filters,
    paste,
    scores,
    valid_keys,
)
from .flow import flow_to_image, make_color_wheel
from .geometry import Geometry, attention_geometry
from .tf_ops import extract_patches, nearest_ac_indices, pad_same, resize_nearest_ac, same_padding

__all__ = [
    "Geometry",
    "attention_geometry",
    "attention_weights",
    "contextual_attention",
    "diagonal_sum",
    "extract_patches",
    "flow_to_image",
    "fuse_scores",
    "get_array_module",
    "gpu_available",
    "make_color_wheel",
    "masked_softmax",
    "matching_filters",
    "nearest_ac_indices",
    "pad_same",
    "paste",
    "resize_nearest_ac",
    "same_padding",
    "scores",
    "to_numpy",
    "valid_keys",
]
