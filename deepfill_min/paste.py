r"""The paste of contextual attention (spec §4.8) as one matmul over r×r blocks instead of 2r×2r patches.

The official reconstruction is ``conv2d_transpose`` of the attention weights with the raw 2r×2r patches of b as
filters, at stride r: query $p = (i, j)$ adds $\sum_l a_{p,l} R_l$ onto the 2r×2r square at block $(i, j)$ of the
canvas. Cut every patch and the canvas into r×r blocks. Block $(a, b) \in \{0, 1\}^2$ of key $l = (u, v)$'s patch is
block $(u s + a, v s + b)$ of the SAME-padded b, $\beta_{us+a,\,vs+b}$, and it lands on canvas block $(i + a, j + b)$.
So canvas block $(I, J)$ is

$$Y_{I,J} = \sum_{a,b} \sum_l a_{(I-a,\,J-b),\,l}\ \beta_{u s + a,\,v s + b}
          = \sum_m \tilde a_{(I,J),\,m}\ \beta_m, \qquad
  \tilde a_{(I,J),\,(us+a,\,vs+b)} \mathrel{+}= a_{(I-a,\,J-b),\,(u,v)},$$

one matmul of the *shifted-and-summed weights* $\tilde a$ with the blocks $\beta$ (C·r·r columns), instead of a matmul
with the patches (4·C·r·r columns) followed by an overlap-add: a quarter of the multiply-adds of the paste. Building
$\tilde a$ is four slice-adds of the weight matrix (`_ShiftedWeights`, with a hand-written backward: the same four
slices read back).

`paste` works on any rectangular window of queries (rows × columns of f↓), so the chunked layer and hole-only
inference use the same code; a window's canvas covers one block more than its queries in each direction.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from reference.geometry import Geometry

from .gemm import mm_nt
from .keys import KeySubset, pasted_blocks
from .tf_ops import pad_same

Blocks = tuple[torch.Tensor, tuple[int, int], torch.Tensor | None]


def blocks(b: torch.Tensor, g: Geometry, rate: int, keys: KeySubset | None = None, stride: int = 1) -> Blocks:
    """§4.1 the r×r blocks of the SAME-padded b as (B, C·r·r, n), the grid (nbh, nbw) and which blocks they are:
    all nbh·nbw (None), or with `keys` only those a valid key's patch covers (`deepfill_min.keys`)."""
    B, C = b.shape[:2]
    bp = pad_same(b, g.K, g.S)
    nb = (bp.shape[2] // rate, bp.shape[3] // rate)
    # (with a stride s ≥ 3 SAME may leave a remainder that no patch reads: crop it)
    bp = bp[..., : nb[0] * rate, : nb[1] * rate]
    # stored transposed, (B, C·r·r, n): the blocks are the filters of the paste's product (`gemm.mm_nt`); the
    # reshape is the one copy, in either memory format
    beta = bp.view(B, C, nb[0], rate, nb[1], rate).permute(0, 1, 3, 5, 2, 4)
    beta = beta.reshape(B, C * rate * rate, nb[0] * nb[1])
    used = None if keys is None else pasted_blocks(keys, g, nb, stride, b.device)
    return (beta, nb, None) if used is None else (beta[..., used], nb, used)


def _shifts(rows: int, cols: int, lh: int, lw: int, stride: int) -> list[tuple]:
    """(destination index) of weights (B, rows, cols, lh, lw) in ã (B, rows + 1, cols + 1, nbh, nbw), per (a, b)."""
    return [(slice(None), slice(a, a + rows), slice(c, c + cols),
             slice(a, a + (lh - 1) * stride + 1, stride), slice(c, c + (lw - 1) * stride + 1, stride))
            for a in range(2) for c in range(2)]  # fmt: skip


class _ShiftedWeights(torch.autograd.Function):
    r"""$\tilde a$ from the weights of a window of queries, (B, rows, cols, lh, lw) -> (B, rows+1, cols+1, nbh, nbw)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, nb: tuple[int, int], stride: int) -> torch.Tensor:
        B, rows, cols, lh, lw = a.shape
        ctx.shifts = _shifts(rows, cols, lh, lw, stride)
        out = a.new_zeros(B, rows + 1, cols + 1, *nb)
        for index in ctx.shifts:
            out[index] += a
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        first, *rest = ctx.shifts
        ga = grad[first].clone()
        for index in rest:
            ga += grad[index]
        return ga, None, None


def paste(a: torch.Tensor, bl: Blocks, g: Geometry, rate: int, stride: int, rows: int, cols: int) -> torch.Tensor:
    """Canvas (B, C, (rows+1)·r, (cols+1)·r) of a window of rows × cols queries with weights `a` (B, rows·cols, L)
    and the `blocks` `bl` of b.

    The canvas's block (0, 0) is the window's first query's block; the caller places and crops it (§4.8).
    """
    B, (beta, nb, used) = a.shape[0], bl
    at = _ShiftedWeights.apply(a.reshape(B, rows, cols, g.L // g.lw, g.lw), nb, stride).view(B, -1, nb[0] * nb[1])
    # the matmul runs in the blocks' precision (the inputs' or autocast's); ã is float32 like the weights
    y = mm_nt((at if used is None else at[..., used]).to(beta.dtype), beta)
    y = y.view(B, rows + 1, cols + 1, -1, rate, rate).permute(0, 3, 1, 4, 2, 5)
    return y.reshape(B, -1, (rows + 1) * rate, (cols + 1) * rate)


def normalised(y: torch.Tensor, paste_norm: str, g: Geometry, rate: int, origin: tuple[int, int]) -> torch.Tensor:
    """A part of the canvas starting at canvas pixel `origin`, divided by 4 (official) or, for ``"overlap"``, by how
    many pasted patches cover each of its pixels."""
    if paste_norm == "official":
        return y / 4.0
    count = torch.zeros(g.fh + 1, g.fw + 1, dtype=y.dtype, device=y.device)
    for a in range(2):
        for c in range(2):
            count[a : a + g.fh, c : c + g.fw] += 1
    count = count.repeat_interleave(rate, 0).repeat_interleave(rate, 1)
    (t, l), (h, w) = origin, y.shape[-2:]
    return y / count[t : t + h, l : l + w]
