r"""The fuse of contextual attention (spec §4.5) in torch: diagonal sums of the score matrix, whole or in chunks.

The fuse adds each score $s_{p,l}$ to its diagonal neighbours $s_{p\pm1,\,l\pm1}$, first along the row-major order
of queries p and keys l, then along the column-major order, wrap-around at row ends included. Two ways to compute it:

* all queries at once (`DiagonalSum`): slice-adds on the (B, P, L) matrix for the row-major pass and on its
  (B, fh, fw, bh, bw) view for the column-major pass, with a hand-written adjoint for the backward;
* a chunk of queries (`fuse_plan` + `shift_sum`): the fuse reaches neighbouring queries (and, through the
  wrap-around, the first and last rows), so the chunk's raw scores are computed on a halo of queries; each pass
  gathers the queries' neighbours through precomputed tables (whole rows of scores) and shifts the keys with
  slice-adds, in column-major order on the 2-D view of the key grid.

`tests/test_attention.py` checks both against the NumPy oracle and against each other for every chunk size.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.autograd.function import once_differentiable


def _row_major_neighbours(n: int, k: int) -> np.ndarray:
    """(k, n) table: entry t of position p is p + t - c, or n (a zero sentinel) outside [0, n)."""
    c = (k - 1) // 2
    idx = np.arange(n)[None, :] + np.arange(k)[:, None] - c
    return np.where((idx >= 0) & (idx < n), idx, n)


def _col_major_neighbours(h: int, w: int, k: int) -> np.ndarray:
    """(k, h*w) table of neighbours in column-major order, as row-major indices (sentinel h*w outside)."""
    p = np.arange(h * w)
    cm = (p % w) * h + p // w
    nb = _row_major_neighbours(h * w, k)[:, cm]
    return np.where(nb < h * w, (nb % h) * w + nb // h, h * w)


@functools.lru_cache(maxsize=64)
def fuse_plan(fh: int, fw: int, bh: int, bw: int, k: int, p0: int, p1: int, device: torch.device):
    """Index tables that fuse the scores of queries [p0, p1) from the raw scores of their halo V.

    Returns (V as a slice or index tensor, the query tables of both passes), each table (k, rows).
    """
    return _plan(fh, fw, bh, bw, k, np.arange(p0, p1), device)


@functools.lru_cache(maxsize=16)
def fuse_plan_window(fh: int, fw: int, bh: int, bw: int, k: int, rows: tuple[int, int], cols: tuple[int, int],
                     device: torch.device):  # fmt: skip
    """`fuse_plan` for the queries of a window of f↓, rows × cols (half-open ranges), in row-major order."""
    queries = (np.arange(*rows)[:, None] * fw + np.arange(*cols)[None, :]).ravel()
    return _plan(fh, fw, bh, bw, k, queries, device)


def _plan(fh: int, fw: int, bh: int, bw: int, k: int, queries: np.ndarray, device: torch.device):
    P = fh * fw  # (the key grid bh × bw is stepped by shift_sum, not through tables)
    # pass 2 (column-major) reads pass-1 scores at U; pass 1 (row-major) reads raw scores at V
    r2 = _col_major_neighbours(fh, fw, k)[:, queries]
    U = np.unique(r2[r2 < P])
    r1 = _row_major_neighbours(P, k)[:, U]
    V = np.unique(r1[r1 < P])

    def local(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
        pos = np.full(P + 1, len(rows))  # the sentinel maps to the zero row appended after the last row
        pos[rows] = np.arange(len(rows))
        return pos[table]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.long, device=device)

    v_sel = slice(int(V[0]), int(V[-1]) + 1) if V[-1] - V[0] + 1 == len(V) else t(V)
    # pass 1 gets one more output row, all sentinels: the zero row that pass 2's sentinel entries read
    r1_local = np.concatenate([local(r1, V), np.full((k, 1), len(V))], axis=1)
    return v_sel, t(r1_local), t(local(r2, U))


def _transpose_keys(s: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(…, L) scores with keys in row-major order of a (h, w) grid -> keys in its column-major order."""
    return s.view(*s.shape[:-1], *grid).transpose(-1, -2).reshape(s.shape)


def shift_sum(s: torch.Tensor, rows: torch.Tensor, k: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    r"""One pass of the fuse on a chunk: $out_{p,l} = \sum_t s_{\mathrm{rows}_t(p),\ l + t - c}$, zero outside.

    `s` (B, n + 1, L) ends in a zero row, the sentinel that `rows` (k, n') point to outside the query grid. Keys step
    in row-major order, or in column-major order of the key `grid` (bh, bw), by the slice pairs of
    `_column_major_parts` on the (bh, bw) view (no transposed copies).
    """
    c, L = (k - 1) // 2, s.shape[-1]
    if grid is not None and k // 2 > grid[0]:  # a step (up to k // 2) past the grid's height wraps twice: transpose
        return _transpose_keys(shift_sum(_transpose_keys(s, grid), rows, k), grid[::-1])
    out, buf = s.index_select(1, rows[c]), None
    for t in range(k):
        d = t - c
        if d == 0 or abs(d) >= L:  # a step past every key adds nothing (a fuse kernel longer than the key grid)
            continue
        buf = _rows(s, rows[t], buf)
        if grid is None:
            if d > 0:
                out[..., : L - d] += buf[..., d:]
            else:
                out[..., -d:] += buf[..., : L + d]
            continue
        src, dst = buf.unflatten(-1, grid), out.unflatten(-1, grid)
        for kd, ks in _column_major_parts(*grid, d):
            dst[(..., *kd)] += src[(..., *ks)]
    return out


def _rows(s: torch.Tensor, rows: torch.Tensor, buf: torch.Tensor | None) -> torch.Tensor:
    """``s[:, rows]``; without autograd written into `buf` when given (one buffer for every step, not one each)."""
    if buf is None or (torch.is_grad_enabled() and s.requires_grad):
        return s.index_select(1, rows)
    return torch.index_select(s, 1, rows, out=buf)


def _shift_add(s: torch.Tensor, offsets: range, grids: tuple | None = None) -> torch.Tensor:
    r"""$out_{p,l} = \sum_d s_{p+d,\,l+d}$, zero outside: row-major on (B, P, L), column-major on (B, fh, fw, bh, bw).

    Column-major (`grids` = ((fh, fw), (bh, bw))): stepping d along the column-major order moves (y, x) to
    (y + d, x), or wraps to (y + d ∓ fh, x ± 1) past the top or bottom row; so each offset is 2 × 2 slice-adds on the
    4-D view, no transposed copy. It needs |d| ≤ fh and bh (one wrap at most).
    """
    out = s.clone() if 0 in offsets else torch.zeros_like(s)
    for d in offsets:
        if d == 0:
            continue
        if grids is None:
            n_p, n_l = s.shape[1:]
            if abs(d) >= min(n_p, n_l):  # a step past every query or key adds nothing
                continue
            lo, hi = max(-d, 0), max(d, 0)
            out[:, lo : n_p - hi, lo : n_l - hi] += s[:, hi : n_p - lo, hi : n_l - lo]
            continue
        for qd, qs in _column_major_parts(*grids[0], d):
            for kd, ks in _column_major_parts(*grids[1], d):
                out[(slice(None), *qd, *kd)] += s[(slice(None), *qs, *ks)]
    return out


def _column_major_parts(h: int, w: int, d: int) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """(destination, source) slices of (y, x) for a step of d in column-major order: the plain part and the wrap."""
    if d > 0:
        return [((slice(0, h - d), slice(None)), (slice(d, h), slice(None))),
                ((slice(h - d, h), slice(0, w - 1)), (slice(0, d), slice(1, w)))]  # fmt: skip
    e = -d
    return [((slice(e, h), slice(None)), (slice(0, h - e), slice(None))),
            ((slice(0, e), slice(1, w)), (slice(h - e, h), slice(0, w - 1)))]  # fmt: skip


class DiagonalSum(torch.autograd.Function):
    r"""Batched ``conv2d(s, eye(k), SAME)`` along the row-major (or column-major) order of queries and keys.

    $s'_{p,l} = \sum_t s_{p+t-c,\,l+t-c}$ for all queries at once. Its adjoint is the same sum with the offsets
    negated, so the backward is slice-adds as well (autograd's own backward of the slices would zero-fill a full copy
    per offset).
    """

    @staticmethod
    def forward(ctx, s: torch.Tensor, k: int, grids: tuple | None = None) -> torch.Tensor:
        c = (k - 1) // 2
        ctx.offsets, ctx.grids = range(-(k - 1 - c), c + 1), grids
        return _shift_add(s, range(-c, k - c), grids)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return _shift_add(grad, ctx.offsets, ctx.grids), None, None
