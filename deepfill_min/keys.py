r"""Pruned keys: what a masked key cannot change is not computed (spec §4.5-4.8).

A masked key's weight is exactly 0 under both maskings of §4.6 (official: $a = \mathrm{softmax}(\lambda s m) \odot m$,
its logit is $\lambda s \cdot 0 = 0$ whatever its score; exact: its logit is $-\infty$). So two parts of the layer
can skip it:

* **Scores.** The fused score of key $l$ reads raw scores at $l$'s neighbours: ±c steps in row-major order after ±c
  steps in column-major order (§4.5, c = ``fuse_k // 2``). A raw score column is needed only if some valid key's
  fused score reads it; the others are left at 0, and only masked keys' fused scores (which every masking ignores)
  read them. The matmul $F_\downarrow W^\top$ runs on the needed columns only, then they are scattered into the
  (B, q, L) score tensor.
* **Paste.** Block $m$ of b receives the weights of the keys whose 2r×2r patch covers it (§4.8, `paste`); a block
  covered by masked keys only has an all-zero column in $\tilde a$ and is left out of the paste matmul.

With a 256×256 hole in a 512×512 image a quarter of the keys is left out of both matmuls. The values are the same
to float rounding (the kept columns are the same dot products; the left-out ones were zeros or were ignored). Keys
are pruned when at least a tenth can go (below that the scatter costs more than the matmul saves). Finding them
reads the mask on the host, so the layer in training mode does not prune (`ContextualAttention` prunes in eval
mode: the trainer reads nothing back from the device), nor does autograd on a GPU or `torch.compile` (a graph
break).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from reference.geometry import Geometry

from .gemm import mm_nt

KEEP_AT_MOST = 0.9  # prune only if at most this share of the key columns (or blocks) is kept


class KeySubset(NamedTuple):
    valid: np.ndarray | None  # the valid keys (row-major), None when nothing is pruned
    scored: torch.Tensor | None  # the key columns whose raw scores are computed, None: all of them


def key_subset(mm: torch.Tensor, g: Geometry, fuse_k: int, fuse: bool) -> KeySubset:
    """The keys that can matter for valid keys `mm` (1 or B, L): any sample's valid keys and their fuse neighbours."""
    if (torch.is_grad_enabled() and mm.device.type != "cpu") or torch.compiler.is_compiling():
        return KeySubset(None, None)  # (no host sync in GPU training, no graph break under torch.compile)
    valid = np.flatnonzero((mm > 0).any(0).cpu().numpy())
    needed = valid
    if fuse:
        steps = np.arange(-((fuse_k - 1) // 2), fuse_k - (fuse_k - 1) // 2)
        y, x = np.divmod(valid, g.bw)
        cm = ((x * g.bh + y)[:, None] + steps).ravel()  # column-major neighbours of the valid keys
        x2, y2 = np.divmod(cm[(cm >= 0) & (cm < g.L)], g.bh)
        rm = ((y2 * g.bw + x2)[:, None] + steps).ravel()  # their row-major neighbours
        needed = np.unique(rm[(rm >= 0) & (rm < g.L)])
    scored = torch.as_tensor(needed, device=mm.device) if len(needed) <= KEEP_AT_MOST * g.L else None
    return KeySubset(valid, scored)


def pasted_blocks(keys: KeySubset, g: Geometry, nb: tuple[int, int], stride: int, device) -> torch.Tensor | None:
    """The blocks of b (row-major on the (nbh, nbw) grid) that some valid key's 2r×2r patch covers, or None: all."""
    if keys.valid is None:
        return None
    u, v = np.divmod(keys.valid, g.lw)
    rows = (u * stride)[:, None] + np.array([0, 0, 1, 1])  # key (u, v) covers blocks (us + a, vs + b), a, b in {0, 1}
    cols = (v * stride)[:, None] + np.array([0, 1, 0, 1])
    used = np.unique((rows * nb[1] + cols).ravel())
    return torch.as_tensor(used, device=device) if len(used) <= KEEP_AT_MOST * nb[0] * nb[1] else None


def raw_scores(q: torch.Tensor, w: torch.Tensor, inv_norm: torch.Tensor, scored: torch.Tensor | None) -> torch.Tensor:
    r"""$S = q\,W^\top / \lVert w \rVert$, (B, n, L); with `scored`, only those key columns (the others are 0)."""
    if scored is None:
        return mm_nt(q, w).mul_(inv_norm)
    s = mm_nt(q, w[:, scored]).mul_(inv_norm[..., scored])
    return s.new_zeros(*s.shape[:-1], w.shape[1]).index_copy_(-1, scored, s)
