r"""Contextual attention, the NumPy/CuPy reference (spec §4). Read this file top to bottom.

DeepFill v1 fills a hole by *copying* features from the known part of the image. For every position of the
foreground feature map $f$ it scores every 3×3 patch of the background $b$, turns the scores into attention weights
with a softmax, and pastes a weighted sum of background patches back at that position:

1. cut $b$ into $2r×2r$ **raw patches** $R_l$ at stride $r$; they are what gets pasted (§4.1);
2. **downsample** $f$ and $b$ by the rate $r$ with align-corners nearest resize (§4.2): matching is done at half
   resolution, pasting at full resolution;
3. cut $b↓$ into 3×3 **matching filters** $w_l$ and normalise each one,
   $\hat w_l = w_l / \max(\lVert w_l\rVert, 10^{-4})$ (§4.3); the foreground is *not*
   normalised, so the score is not a cosine;
4. **score** every query position $p$ against every key $l$: $s_{p,l} = \langle f↓_p, \hat w_l\rangle$ (§4.4);
5. **fuse**: add each score to its diagonal neighbours, first along the row-major order of positions, then along the
   column-major order, so that neighbouring queries agree on neighbouring keys (§4.5);
6. **mask**: a key whose 3×3 window touches the hole gets score 0 before and weight 0 after the softmax,
   $a_{p,l} = \mathrm{softmax}_l(\lambda\, s_{p,l} m_l)\, m_l$ (§4.6);
7. the **offset** of a query is the position of its largest weight (for the flow picture only, §4.7);
8. **paste** with a transposed convolution, $y = \mathrm{conv\_transpose}(a, R, \text{stride } r) / 4$ (§4.8).

This module loops over the batch like the official code (§4.9): it is the oracle, written to be checked by eye,
and the torch layer in `deepfill_min.attention` must agree with it.

Deviations from the official function (each a keyword whose default is the official behaviour):

* `per_sample_mask=True` uses `mask[n]` for sample `n`; the official code uses `mask[0]` for the whole batch.
  With the default a mask must have batch 1, so that no mask is silently ignored.
* `mask_softmax="exact"` gives masked keys logit $-\infty$, so the valid weights sum to 1 (0 if every key is masked);
  officially they get logit 0 and the weights sum to less than 1.
* `paste_norm="overlap"` divides the paste by the number of patches covering each pixel; officially the constant 4
  darkens the border rows and columns by 1/2 (corners 1/4).
* The default `rate` is 2, the value the model uses; the official function's default is 1.
* Offsets divide the key index by the key-grid width; the official code divides by the width of $f↓$, which is the
  same number in every case where the official code runs.
"""

from __future__ import annotations

from .backend import get_array_module
from .geometry import Geometry, attention_geometry, check_options, check_shapes
from .tf_ops import extract_patches, resize_nearest_ac, same_padding


def diagonal_sum(m, k: int):
    r"""``conv2d(m, eye(k), SAME)`` on a 2-D matrix: $m'_{p,q} = \sum_t m_{p+t-c,\,q+t-c}$, zeros outside (§4.5)."""
    xp = get_array_module(m)
    # SAME padding of a k×k kernel at stride 1: c = (k-1)//2 before, the rest after
    c, after = same_padding(1, k, 1)
    mp = xp.pad(m, ((c, after), (c, after)))
    n_p, n_l = m.shape
    return sum(mp[t : t + n_p, t : t + n_l] for t in range(k))


def fuse_scores(s, g: Geometry, k: int):
    """Attention propagation (§4.5) on the (P, L) score matrix, with the official wrap-around at row ends."""
    # horizontal: neighbours in the row-major flattening of queries p = y*fw + x and keys l = y'*bw + x'
    s = diagonal_sum(s, k)
    # vertical: re-index to column-major, (fh, fw, bh, bw) -> (fw, fh, bw, bh), and do the same diagonal sum
    s = s.reshape(g.fh, g.fw, g.bh, g.bw).transpose(1, 0, 3, 2).reshape(g.P, g.L)
    s = diagonal_sum(s, k)
    return s.reshape(g.fw, g.fh, g.bw, g.bh).transpose(1, 0, 3, 2).reshape(g.P, g.L)


def masked_softmax(s, mm, scale: float, mode: str = "official"):
    r"""Attention weights over keys (§4.6). `mm` is 1 for a valid key, 0 for a masked one."""
    xp = get_array_module(s)
    if mode == "official":
        # $a = \mathrm{softmax}(\lambda\, s \cdot m) \cdot m$: masked keys keep e^0 in the denominator
        logits = scale * (s * mm)
    else:
        # exact: masked keys get logit -inf; if every key is masked, all logits 0 and the final ·m zeroes them
        logits = xp.where(mm > 0, scale * s, -xp.inf) if bool(mm.any()) else xp.zeros_like(s)
    e = xp.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True) * mm


def paste(a, raw, g: Geometry, rate: int, paste_norm: str = "official"):
    r"""``conv2d_transpose(a, raw, stride r, SAME)`` then the normalisation (§4.8).

    In index form $Y[i r - p_t + u,\ j r - p_l + v] \mathrel{+}= \sum_l a_{(i,j),l} R_l[:, u, v]$: one strided
    slice-add per kernel offset $(u, v)$, deterministic and the same on NumPy and CuPy.
    """
    xp = get_array_module(a)
    c = raw.shape[1]
    # the weighted patch of every query: (P, L) @ (L, C*K*K) -> (fh, fw, C, K, K)
    cols = (a @ raw.reshape(g.L, -1)).reshape(g.fh, g.fw, c, g.K, g.K)
    hp, wp = (g.fh - 1) * rate + g.K, (g.fw - 1) * rate + g.K
    canvas = xp.zeros((c, hp, wp), dtype=cols.dtype)
    count = xp.zeros((1, hp, wp), dtype=cols.dtype)
    for u in range(g.K):
        for v in range(g.K):
            rows, cols_ = slice(u, u + (g.fh - 1) * rate + 1, rate), slice(v, v + (g.fw - 1) * rate + 1, rate)
            canvas[:, rows, cols_] += cols[:, :, :, u, v].transpose(2, 0, 1)
            count[:, rows, cols_] += 1
    # crop the SAME padding away
    y = canvas[:, g.pt : g.pt + g.H, g.pl : g.pl + g.W]
    if paste_norm == "official":
        # the constant 4 (= the overlap of an interior pixel when r = 2)
        return y / 4.0
    return y / count[:, g.pt : g.pt + g.H, g.pl : g.pl + g.W]


def matching_filters(bd, g: Geometry, ksize: int, stride: int):
    r"""The normalised keys $\hat w_l$, (B, L, ksize·ksize·C), from the downsampled background b↓ (§4.3)."""
    xp = get_array_module(bd)
    # key l = y'·bw + x': the ksize×ksize patch of b↓ at (y', x'), flattened
    w = extract_patches(bd, ksize, stride).reshape(bd.shape[0], g.L, -1)
    # $\hat w_l = w_l / \max(\lVert w_l \rVert, 10^{-4})$: the foreground is not normalised, so this is no cosine
    return w / xp.maximum(xp.sqrt((w * w).sum(axis=-1, keepdims=True)), 1e-4)


def scores(fd, w_hat, g: Geometry, ksize: int):
    """The (P, L) score matrix of one sample: `fd` (1, C, fh, fw) is f↓, `w_hat` (L, D) its keys (§4.4)."""
    # query p = y·fw + x: the ksize×ksize patch of f↓ around (y, x) at stride 1 (a SAME convolution)
    fp = extract_patches(fd, ksize, 1).reshape(g.P, -1)
    # $s_{p,l} = \langle f↓_p, \hat w_l \rangle$
    return fp @ w_hat.T


def valid_keys(mask, g: Geometry, ksize: int, stride: int):
    """``mm``: 1 where the key's ksize×ksize window of the downsampled mask is all zero (§4.6), shape (B_m, L)."""
    md = resize_nearest_ac(mask, (g.bh, g.bw))
    m = extract_patches(md, ksize, stride).reshape(mask.shape[0], g.L, -1)
    return (m.mean(axis=-1) == 0).astype(mask.dtype)


def _check(f, b, mask, ksize, stride, rate, fuse_k, fuse, per_sample_mask, mask_softmax, paste_norm) -> Geometry:
    check_shapes(f.shape, b.shape, None if mask is None else mask.shape, per_sample_mask)
    check_options(mask_softmax, paste_norm)
    for name, arr in (("f", f), ("b", b), ("mask", mask)):
        if arr is not None and arr.dtype.kind != "f":
            raise ValueError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return attention_geometry(f.shape[2:], b.shape[2:], ksize, stride, rate, fuse_k, fuse)


def attention_weights(
    f,
    b,
    mask=None,
    ksize: int = 3,
    stride: int = 1,
    rate: int = 2,
    fuse_k: int = 3,
    softmax_scale: float = 10.0,
    fuse: bool = True,
    *,
    per_sample_mask: bool = False,
    mask_softmax: str = "official",
):
    """Steps 2-6: the attention weights $a_{p,l}$ of every query p of f↓ over every key l, shape (B, P, L)."""
    xp = get_array_module(f, b)
    g = _check(f, b, mask, ksize, stride, rate, fuse_k, fuse, per_sample_mask, mask_softmax, "official")
    batch = f.shape[0]
    # §4.2 downsample both maps by the rate with align-corners nearest resize
    fd = resize_nearest_ac(f, (g.fh, g.fw))
    bd = resize_nearest_ac(b, (g.bh, g.bw))
    # §4.3 matching filters: ksize×ksize patches of b↓, each normalised
    w_hat = matching_filters(bd, g, ksize, stride)
    # §4.6 valid keys (the official code uses mask[0] for every sample)
    mm = xp.ones((1, g.L), dtype=f.dtype) if mask is None else valid_keys(mask, g, ksize, stride)
    weights = []
    for n in range(batch):
        # §4.4 scores $s_{p,l} = \langle f↓_p, \hat w_l \rangle$
        s = scores(fd[n : n + 1], w_hat[n], g, ksize)
        # §4.5 fuse
        if fuse:
            s = fuse_scores(s, g, fuse_k)
        # §4.6 masked softmax over keys
        weights.append(masked_softmax(s, mm[n if mm.shape[0] > 1 else 0], softmax_scale, mask_softmax))
    return xp.stack(weights)


def contextual_attention(
    f,
    b,
    mask=None,
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
    return_offsets: bool = True,
):
    """Reconstruct `f` (B, C, H, W) from patches of `b` (B, C, H_b, W_b); `mask` is (1 or B, 1, H_b, W_b), 1 = hole.

    Returns ``(y, offsets)``: `y` has f's shape and dtype; `offsets` is an int64 (B, 2, fh, fw) array holding, for
    each position of f↓, the (row, column) displacement to its best-matching key (None unless `return_offsets`).
    """
    xp = get_array_module(f, b)
    g = _check(f, b, mask, ksize, stride, rate, fuse_k, fuse, per_sample_mask, mask_softmax, paste_norm)
    # §4.1 raw patches from the full-resolution b: 2r×2r at stride r·s -> (B, L, C, K, K)
    raw = extract_patches(b, g.K, g.S)
    # §4.2-4.6 attention weights, (B, P, L)
    a = attention_weights(
        f, b, mask, ksize, stride, rate, fuse_k, softmax_scale, fuse,
        per_sample_mask=per_sample_mask, mask_softmax=mask_softmax,
    )  # fmt: skip
    offsets = None
    if return_offsets:
        # §4.7 offsets: best key (row, col) minus the query's own (row, col)
        best = a.argmax(axis=2).reshape(-1, g.fh, g.fw)
        grid_y, grid_x = xp.meshgrid(xp.arange(g.fh), xp.arange(g.fw), indexing="ij")
        offsets = xp.stack([best // g.lw - grid_y, best % g.lw - grid_x], axis=1).astype(xp.int64)
    # §4.8 paste the raw patches, weighted by the attention, one sample at a time
    y = xp.stack([paste(a[n], raw[n], g, rate, paste_norm) for n in range(f.shape[0])])
    return y.astype(f.dtype), offsets
