"""TensorFlow's padding and resize semantics in torch (spec §2), for the attention layer and the networks.

The index tables and padding amounts come from `reference.tf_ops`, where they are derived and tested against the
spec's examples; this module only applies them to tensors on any device.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from reference.tf_ops import nearest_ac_indices, same_padding


def pad_same(x: torch.Tensor, k: int, s: int = 1, d: int = 1) -> torch.Tensor:
    """Zero-pad NCHW `x` by the TF-SAME rule (asymmetric for stride 2 on even sizes, §2.1).

    Without autograd the padded tensor is written once: the copy of `x`, then zeros on the border alone (``F.pad``
    zero-fills all of it first; at 1024² that is a 128 MiB write more). It keeps the memory format of `x`.
    """
    pt, pb = same_padding(x.shape[-2], k, s, d)
    pl, pr = same_padding(x.shape[-1], k, s, d)
    if x.requires_grad and torch.is_grad_enabled():
        return F.pad(x, (pl, pr, pt, pb))
    H, W = x.shape[-2:]
    out = torch.empty(*x.shape[:-2], pt + H + pb, pl + W + pr, dtype=x.dtype, device=x.device,
                      memory_format=memory_format(x))  # fmt: skip
    rows, cols = slice(pt, pt + H), slice(pl, pl + W)
    out[..., rows, cols] = x
    for border in (out[..., :pt, :], out[..., pt + H :, :], out[..., rows, :pl], out[..., rows, pl + W :]):
        border.zero_()
    return out


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """Channels-last for a 4-D `x` stored so (with more than one channel), else contiguous."""
    last = x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if last else torch.contiguous_format


@functools.lru_cache(maxsize=256)
def _indices(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(nearest_ac_indices(n_in, n_out)).to(device)


@functools.lru_cache(maxsize=256)
def _selection(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n_out, n_in) one-hot rows picking the align-corners nearest source of each output (built once, on the host)."""
    return torch.from_numpy(np.eye(n_in)[nearest_ac_indices(n_in, n_out)]).to(device, dtype)


def resize_nearest_ac(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    r"""Nearest resize with align_corners=True (§2.2): an index gather of rows and columns, not ``F.interpolate``.

    Under ``torch.compile`` the gather is written as $R\,x\,C^\top$ with one-hot selection matrices instead, exact
    for finite `x` ($x_k \cdot 1 + \sum 0 \cdot x_j = x_k$): the backward of ``index_select``, compiled by
    inductor's vectorised C++ code inside the attention, corrupted the heap in torch 2.13 (``compile=true`` on the
    CPU), and the matmul compiles cleanly. Eager code keeps the cheaper gather. Both tables are cached per shape and
    device, so no call reads anything back from the device.
    """
    if torch.compiler.is_compiling():
        with torch.autocast(x.device.type, enabled=False):  # a selection: no rounding to a lower precision
            R = _selection(x.shape[-2], size[0], x.device, x.dtype)
            C = _selection(x.shape[-1], size[1], x.device, x.dtype)
            return R @ x @ C.T
    rows = _indices(x.shape[-2], size[0], x.device)
    cols = _indices(x.shape[-1], size[1], x.device)
    if memory_format(x) == torch.channels_last:  # gathered as (N, H, W, C), so the result stays channels-last
        return x.permute(0, 2, 3, 1).index_select(1, rows).index_select(2, cols).permute(0, 3, 1, 2)
    return x.index_select(-2, rows).index_select(-1, cols)


def unfold_same(x: torch.Tensor, k: int, s: int = 1) -> torch.Tensor:
    """``tf.extract_image_patches`` (SAME) as (N, L, C*k*k): patch l = i*n_w + j, values laid out (C, k, k)."""
    return F.unfold(pad_same(x, k, s), k, stride=s).transpose(1, 2)


def patch_rows(x: torch.Tensor, k: int, s: int = 1, channels_last: bool = False) -> torch.Tensor:
    """The SAME patches of `x` as rows (N, L, C*k*k): ``unfold_same``'s, laid out (C, k, k); or with `channels_last`
    laid out (k, k, C) and contiguous, gathered in one copy of C-long runs from a channels-last `x` (``F.unfold``
    then a contiguous transpose copies the patches twice). Only rows of the same layout may be multiplied."""
    if not channels_last:
        return unfold_same(x, k, s)
    n, c = x.shape[:2]
    v = pad_same(x, k, s).permute(0, 2, 3, 1).unfold(1, k, s).unfold(2, k, s)  # (N, rows, cols, C, k, k)
    return v.permute(0, 1, 2, 4, 5, 3).reshape(n, v.shape[1] * v.shape[2], k * k * c).contiguous()
