"""TensorFlow's padding and resize semantics in torch (spec §2), for the attention layer and the networks.

The index tables and padding amounts come from `reference.tf_ops`, where they are derived and tested against the
spec's examples; this module only applies them to tensors on any device.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from reference.tf_ops import nearest_ac_indices, same_padding


def pad_same(x: torch.Tensor, k: int, s: int = 1, d: int = 1) -> torch.Tensor:
    """Zero-pad NCHW `x` by the TF-SAME rule (asymmetric for stride 2 on even sizes, §2.1)."""
    pt, pb = same_padding(x.shape[-2], k, s, d)
    pl, pr = same_padding(x.shape[-1], k, s, d)
    return F.pad(x, (pl, pr, pt, pb))


@functools.lru_cache(maxsize=256)
def _indices(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(nearest_ac_indices(n_in, n_out)).to(device)


def resize_nearest_ac(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize with align_corners=True (§2.2): an index gather, not ``F.interpolate``."""
    rows = _indices(x.shape[-2], size[0], x.device)
    cols = _indices(x.shape[-1], size[1], x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def unfold_same(x: torch.Tensor, k: int, s: int = 1) -> torch.Tensor:
    """``tf.extract_image_patches`` (SAME) as (N, L, C*k*k): patch l = i*n_w + j, values laid out (C, k, k)."""
    return F.unfold(pad_same(x, k, s), k, stride=s).transpose(1, 2)
