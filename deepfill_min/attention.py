r"""Contextual attention in torch: batched, memory-bounded, differentiable (spec §4).

The same computation as `reference.contextual_attention` (read that file for the algorithm, step by step), arranged
for speed and memory:

* **No loop over the batch.** Patches come from ``F.unfold``; scores and paste are batched matmuls,
  $S = F_\downarrow \hat W^\top$ of shape (B, P, L) and $\mathrm{cols} = A R$ of shape (B, P, C·2r·2r); ``F.fold``
  sums the pasted patches (the transposed convolution).
* **Bounded memory.** The score tensor has $P \times L = (HW/r^2)^2$ entries per image, 1 GiB at a 256×256 feature map.
  The softmax runs over keys, so the queries can be processed in chunks exactly. The fuse (§4.5) couples a query to
  its neighbours in row-major and column-major order, wrap-around included, so each chunk first computes the raw
  scores of the neighbours it needs (its *halo*) and applies the fuse through precomputed neighbour tables.
  With autograd on, each chunk is checkpointed, so training memory is bounded the same way.
* **Safe gradients.** $\hat w = w / \max(\lVert w\rVert, 10^{-4})$ uses ``vector_norm``, whose backward is 0 at a zero
  patch (all-zero patches are common after ReLU); ``sqrt(sum + eps)`` would change the forward (peers.md, D3).
* **Offsets only when asked** (``return_offsets=True``): no argmax and no host sync in the training path.

The extensions (`per_sample_mask`, `mask_softmax="exact"`, `paste_norm="overlap"`) and the deviations from the
official code are listed in `reference.contextual_attention`; the defaults are the official behaviour.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from reference.geometry import Geometry, attention_geometry, check_options, check_shapes

from .tf_ops import pad_same, resize_nearest_ac, unfold_same

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of score-sized tensors one chunk may hold (about 8 copies of B×q×L)
_LIVE_SCORE_COPIES = 8


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
def _fuse_plan(fh: int, fw: int, bh: int, bw: int, k: int, p0: int, p1: int, device: torch.device):
    """Index tables that fuse the scores of queries [p0, p1) from the raw scores of their halo V.

    Returns (V as a slice or index tensor, row and column tables of both passes), each table (k, rows) / (k, L).
    """
    P, L = fh * fw, bh * bw
    # pass 2 (column-major) reads pass-1 scores at U; pass 1 (row-major) reads raw scores at V
    r2 = _col_major_neighbours(fh, fw, k)[:, p0:p1]
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
    r1_loc, r2_loc = local(r1, V), local(r2, U)
    c1, c2 = _row_major_neighbours(L, k), _col_major_neighbours(bh, bw, k)
    return v_sel, t(r1_loc)[:, :, None], t(c1)[:, None, :], t(r2_loc)[:, :, None], t(c2)[:, None, :]


def _shift_sum(s: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    r"""$\sum_t s[\mathrm{rows}_t, \mathrm{cols}_t]$ with a zero row and column appended for the sentinels."""
    s = F.pad(s, (0, 1, 0, 1))
    return sum(s[:, rows[t], cols[t]] for t in range(rows.shape[0]))


def _scores(fp: torch.Tensor, w_hat: torch.Tensor, g: Geometry, fuse_k: int, fuse: bool, p0: int, p1: int):
    r"""Fused scores of queries [p0, p1): $S = F_\downarrow \hat W^\top$, then the two diagonal sums (§4.4-4.5)."""
    if not fuse:
        return fp[:, p0:p1] @ w_hat.transpose(1, 2)
    v_sel, r1, c1, r2, c2 = _fuse_plan(g.fh, g.fw, g.bh, g.bw, fuse_k, p0, p1, fp.device)
    s = fp[:, v_sel] @ w_hat.transpose(1, 2)
    # horizontal (row-major) neighbours, then vertical (column-major), wrap-around included
    return _shift_sum(_shift_sum(s, r1, c1), r2, c2)


def _chunk(fp, w_hat, raw, mm, g: Geometry, opts: tuple, p0: int, p1: int):
    """Attention of queries [p0, p1): masked softmax, the pasted columns and (optionally) the best key."""
    fuse_k, fuse, scale, exact, want_best = opts
    s = _scores(fp, w_hat, g, fuse_k, fuse, p0, p1)
    m = mm[:, None, :]
    if exact:
        # masked keys get logit -inf; a sample with no valid key gets all-zero weights (through the final ·m)
        logits = torch.where(m > 0, scale * s, float("-inf"))
        logits = torch.where((m > 0).any(-1, keepdim=True), logits, 0.0)
    else:
        # official: $a = \mathrm{softmax}(\lambda\, s\, m)\, m$, masked keys keep e^0 in the denominator
        logits = scale * (s * m)
    low = logits.dtype in (torch.float16, torch.bfloat16)
    a = (logits.softmax(-1, dtype=torch.float32 if low else None) * m).to(s.dtype)
    # the weighted raw patch of every query, (B, q, L) @ (B, L, C*K*K)
    cols = a @ raw
    best = a.argmax(-1) if want_best else None
    return cols, best


def contextual_attention(
    f: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    ksize: int = 3,
    stride: int = 1,
    rate: int = 2,
    fuse_k: int = 3,
    softmax_scale: float = 10.0,
    fuse: bool = True,
    *,
    per_sample_mask: bool = False,
    mask_softmax: str = "official",
    paste_norm: str = "official",
    return_offsets: bool = False,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reconstruct `f` (B, C, H, W) from patches of `b` (B, C, H_b, W_b); `mask` is (1 or B, 1, H_b, W_b), 1 = hole.

    Returns ``(y, offsets)`` as `reference.contextual_attention` does; `offsets` is None unless `return_offsets`.
    `chunk_size` queries are processed at a time (default: as many as fit in `memory_budget` bytes).
    """
    for name, t in (("f", f), ("b", b), ("mask", mask)):
        if t is not None and (not isinstance(t, torch.Tensor) or not t.is_floating_point()):
            kind = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a floating-point torch.Tensor, got {kind}")
    check_shapes(tuple(f.shape), tuple(b.shape), None if mask is None else tuple(mask.shape), per_sample_mask)
    check_options(mask_softmax, paste_norm)
    g = attention_geometry(tuple(f.shape[2:]), tuple(b.shape[2:]), ksize, stride, rate, fuse_k, fuse)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    B, C = b.shape[:2]
    # §4.1 raw patches of full-resolution b, 2r×2r at stride r·s: (B, L, C*K*K)
    raw = unfold_same(b, g.K, g.S)
    # §4.2 align-corners nearest downsampling (an index gather)
    fd = resize_nearest_ac(f, (g.fh, g.fw))
    bd = resize_nearest_ac(b, (g.bh, g.bw))
    # §4.3 matching filters, $\hat w_l = w_l / \max(\lVert w_l\rVert, 10^{-4})$; norm backward is 0 at w = 0
    w = unfold_same(bd, ksize, stride)
    w_hat = w / torch.linalg.vector_norm(w, dim=-1, keepdim=True).clamp_min(1e-4)
    # §4.4 query patches of f↓ (the SAME conv as a matmul): (B, P, C*k*k)
    fp = unfold_same(fd, ksize, 1)
    # §4.6 valid keys: the window of the downsampled mask is all zero; (1 or B, L)
    if mask is None:
        mm = torch.ones(1, g.L, dtype=fp.dtype, device=f.device)
    else:
        md = resize_nearest_ac(mask, (g.bh, g.bw))
        mm = (F.unfold(pad_same(md, ksize, stride), ksize, stride=stride).mean(1) == 0).to(fp.dtype)
    # chunks of queries; whole rows of f↓ when several fit, so the halo stays small
    if chunk_size is None:
        per_query = _LIVE_SCORE_COPIES * B * g.L * fp.element_size()
        chunk_size = max(1, memory_budget // per_query)
        chunk_size = chunk_size if chunk_size < g.fw else chunk_size - chunk_size % g.fw
    opts = (fuse_k, fuse, float(softmax_scale), mask_softmax == "exact", return_offsets)
    starts = range(0, g.P, chunk_size)
    use_ckpt = torch.is_grad_enabled() and len(starts) > 1
    pieces = []
    for p0 in starts:
        p1 = min(p0 + chunk_size, g.P)
        args = (fp, w_hat, raw, mm, g, opts, p0, p1)
        pieces.append(checkpoint(_chunk, *args, use_reentrant=False) if use_ckpt else _chunk(*args))
    cols = torch.cat([c for c, _ in pieces], dim=1)
    # §4.8 paste: fold sums the overlapping 2r×2r patches (conv2d_transpose), then crop the SAME padding
    hp, wp = (g.fh - 1) * rate + g.K, (g.fw - 1) * rate + g.K
    y = F.fold(cols.transpose(1, 2), (hp, wp), g.K, stride=rate)[:, :, g.pt : g.pt + g.H, g.pl : g.pl + g.W]
    if paste_norm == "official":
        y = y / 4.0
    else:
        ones = torch.ones(1, g.K * g.K, g.P, dtype=y.dtype, device=y.device)
        y = y / F.fold(ones, (hp, wp), g.K, stride=rate)[:, :, g.pt : g.pt + g.H, g.pl : g.pl + g.W]
    offsets = None
    if return_offsets:
        # §4.7 best key (row, col) minus the query's own position, on the grid of f↓
        best = torch.cat([bst for _, bst in pieces], dim=1).view(B, g.fh, g.fw)
        gy = torch.arange(g.fh, device=f.device).view(1, -1, 1)
        gx = torch.arange(g.fw, device=f.device).view(1, 1, -1)
        offsets = torch.stack([best // g.lw - gy, best % g.lw - gx], dim=1)
    return y, offsets


class ContextualAttention(nn.Module):
    """`contextual_attention` as a module: the hyper-parameters are fixed at construction (no weights)."""

    def __init__(
        self,
        ksize: int = 3,
        stride: int = 1,
        rate: int = 2,
        fuse_k: int = 3,
        softmax_scale: float = 10.0,
        fuse: bool = True,
        **options,
    ) -> None:
        super().__init__()
        self.kwargs = dict(
            ksize=ksize, stride=stride, rate=rate, fuse_k=fuse_k, softmax_scale=softmax_scale, fuse=fuse, **options
        )
        check_options(options.get("mask_softmax", "official"), options.get("paste_norm", "official"))

    def forward(self, f: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None):
        return contextual_attention(f, b, mask, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
