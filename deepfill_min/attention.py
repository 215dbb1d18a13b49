r"""Contextual attention in torch: batched, memory-bounded, differentiable (spec §4).

The same computation as `reference.contextual_attention` (read that file for the algorithm, step by step), arranged
for speed and memory:

* **No loop over the batch.** Patches come from ``F.unfold``; scores and paste are batched matmuls,
  $S = F_\downarrow \hat W^\top$ of shape (B, P, L), and the paste (the transposed convolution) is one matmul of
  shifted-and-summed weights with the r×r blocks of b (`deepfill_min.paste`): a quarter of the multiply-adds of
  pasting 2r×2r patches, and no overlap-add afterwards. On the CPU, without autograd, both products run as oneDNN
  1×1 convolutions (`deepfill_min.gemm`: twice the speed of the BLAS matmul on the project's AMD CPU).
* **Bounded memory.** The score tensor has $P \times L = (HW/r^2)^2$ entries per image, 1 GiB at a 256×256 feature map.
  The softmax runs over keys, so the queries can be processed in chunks exactly. The fuse (§4.5) couples a query to
  its neighbours in row-major and column-major order, wrap-around included, so each chunk first computes the raw
  scores of the neighbours it needs (its *halo*) and applies the fuse through precomputed neighbour tables.
  With autograd on, each chunk is checkpointed, so training memory is bounded the same way.
* **Masked keys left out** (`deepfill_min.keys`): a masked key's weight is 0 whatever its score, so the score
  matmul skips the columns that no valid key's fused score reads and the paste skips the blocks that only masked
  keys cover (a quarter of both matmuls for a 256×256 hole at 512×512).
* **Safe gradients.** $1/\max(\lVert w\rVert, 10^{-4})$ is computed as ``rsqrt(clamp_min(sum w², 1e-8))``: the same
  value, and a finite gradient at an all-zero patch (common after ReLU); ``sqrt(sum + eps)`` would change the forward
  (peers.md, D3).
* **No subnormals.** Softmax weights below ``finfo.tiny`` are flushed to 0 (forward and backward): subnormal operands
  slow CPU matmuls several-fold (2.8 s instead of 1.0 s at the training shape), and such weights change no output by
  more than 1e-38.
* **Mixed precision.** Scores and softmax run in float32 for half-precision inputs and under autocast (λ amplifies
  their rounding: in bf16 a weight can move by 20%); the paste matmul runs in the low precision.
* **Offsets only when asked** (``return_offsets=True``): no argmax and no host sync in the training path.

The extensions (`per_sample_mask`, `mask_softmax="exact"`, `paste_norm="overlap"`) and the deviations from the
official code are listed in `reference.contextual_attention`; the defaults are the official behaviour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from reference.geometry import Geometry, attention_geometry, check_options, check_shapes

from .fuse import DiagonalSum, fuse_plan, shift_sum
from .keys import KeySubset, key_subset, raw_scores
from .paste import blocks, normalised, paste
from .tf_ops import memory_format, pad_same, patch_rows, resize_nearest_ac

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of score-sized tensors (B×q×L each) one chunk may hold
LIVE_SCORE_COPIES = 8  # score-sized tensors alive at once per chunk: scores, fuse temporaries, logits, weights


def _scores(fp: torch.Tensor, w: torch.Tensor, inv_norm: torch.Tensor, g: Geometry, fuse_k: int, fuse: bool,
            scored: torch.Tensor | None, p0: int, p1: int) -> torch.Tensor:  # fmt: skip
    r"""Fused scores of queries [p0, p1): $S = F_\downarrow W^\top / \lVert w \rVert$ (the `scored` key columns, or
    all), then the fuse (§4.4-4.5)."""
    if not fuse:
        return raw_scores(fp[:, p0:p1], w, inv_norm, scored)
    if (p0, p1) == (0, g.P):
        # all queries: row-major diagonal sums, then column-major ones on the 4-D view (no transposed copies)
        s = DiagonalSum.apply(raw_scores(fp, w, inv_norm, scored), fuse_k)
        if fuse_k // 2 <= min(g.fh, g.bh):
            grids = ((g.fh, g.fw), (g.bh, g.bw))
            return DiagonalSum.apply(s.view(-1, g.fh, g.fw, g.bh, g.bw), fuse_k, grids).view(-1, g.P, g.L)
        # (a fuse kernel taller than the grid wraps more than once: transpose to column-major order instead)
        s = s.view(-1, g.fh, g.fw, g.bh, g.bw).transpose(1, 2).transpose(3, 4).reshape(-1, g.P, g.L)
        s = DiagonalSum.apply(s, fuse_k)
        return s.view(-1, g.fw, g.fh, g.bw, g.bh).transpose(1, 2).transpose(3, 4).reshape(-1, g.P, g.L)
    plan = fuse_plan(g.fh, g.fw, g.bh, g.bw, fuse_k, p0, p1, fp.device)
    return halo_scores(fp, w, inv_norm, g, fuse_k, plan, scored)


def halo_scores(fp, w, inv_norm, g: Geometry, fuse_k: int, plan: tuple, scored: torch.Tensor | None) -> torch.Tensor:
    """Fused scores of some queries from the raw scores of their halo V through a `fuse_plan` (wrap-around included)."""
    v_sel, r1, r2 = plan
    # one zero query appended: its row of scores is the zero row the tables read outside the query grid
    s = raw_scores(F.pad(fp[:, v_sel], (0, 0, 0, 1)), w, inv_norm, scored)
    return shift_sum(shift_sum(s, r1, fuse_k), r2, fuse_k, (g.bh, g.bw))


class _MaskedSoftmax(torch.autograd.Function):
    r"""$a = \mathrm{softmax}(z) \odot m$ over the last axis, with subnormal weights flushed to zero.

    Subnormal floats (below ``finfo.tiny``, about 1e-38 in float32) make CPU matmuls several times slower and are
    below any meaningful weight, so they are set to 0 in the weights and in the gradient. The gradient with respect
    to a masked logit is returned as 0: every caller's masked logits are constants (0 or $-\infty$).
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        a = z.softmax(-1)
        F.threshold(a, torch.finfo(a.dtype).tiny, 0.0, inplace=True)
        a.mul_(m)
        ctx.save_for_backward(a)
        return a

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (a,) = ctx.saved_tensors
        # $\partial L / \partial z = a \odot (g - \langle a, g \rangle)$ on the valid keys
        gz = a * (grad - (a * grad).sum(-1, keepdim=True))
        return F.hardshrink(gz, torch.finfo(gz.dtype).tiny), None


def _weights(fp, w, inv_norm, mm, g: Geometry, opts: tuple, p0: int, p1: int) -> torch.Tensor:
    """Attention weights of queries [p0, p1) over all keys (§4.4-4.6), shape (B, q, L)."""
    fuse_k, fuse, scale, exact, *_, keys = opts
    with torch.autocast(fp.device.type, enabled=False):  # λ amplifies rounding: scores stay in float32 or better
        return masked_softmax(_scores(fp, w, inv_norm, g, fuse_k, fuse, keys.scored, p0, p1), mm, scale, exact)


def masked_softmax(s: torch.Tensor, mm: torch.Tensor, scale: float, exact: bool) -> torch.Tensor:
    """Weights (B, q, L) from fused scores `s` (overwritten) and the valid keys `mm` (1 or B, L) (§4.6)."""
    m = mm[:, None, :]
    if exact:
        # masked keys get logit -inf; a sample with no valid key gets all-zero weights (through the final ·m)
        logits = torch.where(m > 0, scale * s, float("-inf"))
        logits = torch.where((m > 0).any(-1, keepdim=True), logits, 0.0)
    else:
        # official: $a = \mathrm{softmax}(\lambda\, s\, m)\, m$, masked keys keep e^0 in the denominator
        logits = s.mul_(scale * m)  # in place: s is a fresh tensor here
    return _MaskedSoftmax.apply(logits, m)


def _chunk(fp, w, inv_norm, bl, mm, g: Geometry, opts: tuple, want_best: bool, p0: int, p1: int):
    """Queries [p0, p1): their canvas (§4.8, `paste`) with its first block's (row, column), and their best keys."""
    fw = g.fw
    a = _weights(fp, w, inv_norm, mm, g, opts, p0, p1)
    best = a.argmax(-1) if want_best else None
    r0, r1 = p0 // fw, (p1 - 1) // fw + 1
    c0, c1 = (p0 % fw, (p1 - 1) % fw + 1) if r1 - r0 == 1 else (0, fw)
    if (r1 - r0) * (c1 - c0) != p1 - p0:  # a chunk across rows, not of whole rows: zero weights for the rest
        a = F.pad(a, (0, 0, p0 - r0 * fw, r1 * fw - p1))
    return paste(a, bl, g, opts[4], opts[5], r1 - r0, c1 - c0), (r0, c0), best


def default_chunk_size(g: Geometry, batch: int, itemsize: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Queries per chunk so that LIVE_SCORE_COPIES score-sized tensors fit the budget (whole rows of f↓ if several)."""
    chunk = max(1, memory_budget // (LIVE_SCORE_COPIES * batch * g.L * itemsize))
    return chunk if chunk < g.fw else chunk - chunk % g.fw


def _prepare(f, b, mask, ksize, stride, rate, fuse_k, fuse, per_sample_mask, mask_softmax, paste_norm,
             prune_keys: bool = True):  # fmt: skip
    """Validate the inputs and compute what every chunk shares: geometry, patches, key norms, valid keys, and the
    keys that can matter (`deepfill_min.keys`; all of them unless `prune_keys`)."""
    for name, t in (("f", f), ("b", b), ("mask", mask)):
        if t is not None and (not isinstance(t, torch.Tensor) or not t.is_floating_point()):
            kind = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a floating-point torch.Tensor, got {kind}")
    check_shapes(tuple(f.shape), tuple(b.shape), None if mask is None else tuple(mask.shape), per_sample_mask)
    check_options(mask_softmax, paste_norm)
    g = attention_geometry(tuple(f.shape[2:]), tuple(b.shape[2:]), ksize, stride, rate, fuse_k, fuse)
    with torch.autocast(f.device.type, enabled=False):
        fp, w, inv_norm, mm = _shared(f, b, mask, g, ksize, stride)
    return g, fp, w, inv_norm, mm, key_subset(mm, g, fuse_k, fuse) if prune_keys else KeySubset(None, None)


def _shared(f, b, mask, g: Geometry, ksize: int, stride: int):
    """Query patches, matching filters, inverse key norms and valid keys (§4.2-4.4, 4.6), outside autocast."""
    # §4.2 align-corners nearest downsampling (an index gather); half precision is promoted for the scores
    # (self-attention, f is b, is the model's case: one downsampling and one unfold serve both)
    fd = resize_nearest_ac(f, (g.fh, g.fw))
    bd = fd if b is f else resize_nearest_ac(b, (g.bh, g.bw))
    if fd.dtype in (torch.float16, torch.bfloat16):
        fd, bd = fd.float(), bd.float()
    # §4.4 query patches of f↓ (the SAME conv as a matmul), (B, P, C*k*k), and §4.3 the matching filters w_l;
    # $1 / \max(\lVert w_l\rVert, 10^{-4})$ is applied to the scores' columns.
    # $\lVert w_l \rVert^2$ is a k×k box sum of $\sum_c b↓^2$; clamping it at 1e-8 before the sqrt is the same max
    # and keeps the gradient finite at an all-zero patch (sqrt(sum + eps) would change the forward, peers.md D3).
    # (channels-last features, as the model runs on the CPU, give rows laid out (k, k, C) in one copy)
    last = memory_format(fd) == torch.channels_last
    fp = patch_rows(fd, ksize, 1, last)
    w = fp if b is f and stride == 1 else patch_rows(bd, ksize, stride, last)
    box = torch.ones(1, 1, ksize, ksize, dtype=bd.dtype, device=bd.device)
    sq = F.conv2d(pad_same(bd.pow(2).sum(1, keepdim=True), ksize, stride), box, stride=stride)
    inv_norm = sq.flatten(1).clamp_min(1e-8).rsqrt().unsqueeze(1)
    # §4.6 valid keys: the window of the downsampled mask is all zero; (1 or B, L)
    if mask is None:
        mm = torch.ones(1, g.L, dtype=fp.dtype, device=f.device)
    else:
        md = resize_nearest_ac(mask, (g.bh, g.bw))
        mm = (F.unfold(pad_same(md, ksize, stride), ksize, stride=stride).mean(1) == 0).to(fp.dtype)
    return fp, w, inv_norm, mm


def attention_weights(
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
) -> torch.Tensor:
    """The attention weights of every query of f↓ over every key, (B, P, L), unchunked (for inspection)."""
    g, fp, w, inv_norm, mm, keys = _prepare(
        f, b, mask, ksize, stride, rate, fuse_k, fuse, per_sample_mask, mask_softmax, "official"
    )
    opts = (fuse_k, fuse, float(softmax_scale), mask_softmax == "exact", rate, stride, keys)
    return _weights(fp, w, inv_norm, mm, g, opts, 0, g.P)


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
    prune_keys: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reconstruct `f` (B, C, H, W) from patches of `b` (B, C, H_b, W_b); `mask` is (1 or B, 1, H_b, W_b), 1 = hole.

    Returns ``(y, offsets)`` as `reference.contextual_attention` does; `offsets` is None unless `return_offsets`.
    `chunk_size` queries are processed at a time (default: as many as fit in `memory_budget` bytes). `prune_keys`
    leaves out what masked keys cannot change (`deepfill_min.keys`, the same values; it reads the mask on the host).
    """
    g, fp, w, inv_norm, mm, keys = _prepare(
        f, b, mask, ksize, stride, rate, fuse_k, fuse, per_sample_mask, mask_softmax, paste_norm, prune_keys
    )
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    B, r = f.shape[0], rate
    # §4.1 the r×r blocks of the padded full-resolution b: a raw 2r×2r patch is 2×2 of them
    bl = blocks(b, g, rate, keys, stride)
    if chunk_size is None:
        chunk_size = default_chunk_size(g, B, fp.element_size(), memory_budget)
    opts = (fuse_k, fuse, float(softmax_scale), mask_softmax == "exact", rate, stride, keys)
    starts = range(0, g.P, chunk_size)
    use_ckpt = torch.is_grad_enabled() and len(starts) > 1
    pieces = []
    for p0 in starts:
        args = (fp, w, inv_norm, bl, mm, g, opts, return_offsets, p0, min(p0 + chunk_size, g.P))
        pieces.append(checkpoint(_chunk, *args, use_reentrant=False) if use_ckpt else _chunk(*args))
    # §4.8 paste: each chunk's canvas added at its place, then the SAME padding cropped, then normalised
    if len(pieces) == 1:
        canvas = pieces[0][0]
    else:
        canvas = pieces[0][0].new_zeros(B, b.shape[1], (g.fh + 1) * r, (g.fw + 1) * r)
        for piece, (r0, c0), _ in pieces:
            canvas[..., r0 * r : r0 * r + piece.shape[2], c0 * r : c0 * r + piece.shape[3]] += piece
    y = normalised(canvas, paste_norm, g, rate, (0, 0))[..., g.pt : g.pt + g.H, g.pl : g.pl + g.W]
    offsets = None
    if return_offsets:
        # §4.7 best key (row, col) minus the query's own position, on the grid of f↓
        best = torch.cat([bst for *_, bst in pieces], dim=1).view(B, g.fh, g.fw)
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

    def forward(self, f: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, **overrides):
        """`overrides` replace construction keywords for this call (e.g. ``return_offsets=True``). Masked keys are
        pruned in eval mode only: training reads nothing back from the device."""
        return contextual_attention(f, b, mask, **{"prune_keys": not self.training, **self.kwargs, **overrides})

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
