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
    r"""Nearest resize with align_corners=True (§2.2): a gather of rows and columns, not ``F.interpolate``.

    The gather is written as $R\,x\,C^\top$ with one-hot selection matrices (one 1 per row), which is exact for finite
    `x` ($x_k \cdot 1 + \sum 0 \cdot x_j = x_k$) and costs nothing next to the attention's matmuls. It replaces
    ``index_select``, whose backward, compiled by inductor's vectorised C++ code inside the attention, corrupted the
    heap in torch 2.13 (``compile=true`` on the CPU); the matmul compiles cleanly.
    """
    rows = _indices(x.shape[-2], size[0], x.device)
    cols = _indices(x.shape[-1], size[1], x.device)
    with torch.autocast(x.device.type, enabled=False):  # a selection: no rounding to a lower precision
        R = F.one_hot(rows, x.shape[-2]).to(x.dtype)
        C = F.one_hot(cols, x.shape[-1]).to(x.dtype)
        return R @ x @ C.T


def unfold_same(x: torch.Tensor, k: int, s: int = 1) -> torch.Tensor:
    """``tf.extract_image_patches`` (SAME) as (N, L, C*k*k): patch l = i*n_w + j, values laid out (C, k, k)."""
    return F.unfold(pad_same(x, k, s), k, stride=s).transpose(1, 2)
