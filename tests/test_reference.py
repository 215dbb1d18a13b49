"""The oracle's own steps against independent spellings of spec §4 (explicit loops on small inputs)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference


def _fuse_by_loops(s: np.ndarray, fh: int, fw: int, bh: int, bw: int) -> np.ndarray:
    """§4.5 spelled with index arithmetic: M'[p,q] = M[p-1,q-1] + M[p,q] + M[p+1,q+1], row-major then column-major."""
    n_p, n_l = s.shape

    def diag(m):
        out = np.zeros_like(m)
        for p in range(n_p):
            for q in range(n_l):
                for d in (-1, 0, 1):
                    if 0 <= p + d < n_p and 0 <= q + d < n_l:
                        out[p, q] += m[p + d, q + d]
        return out

    m1 = diag(s)
    # column-major indices: query (y, x) -> x*fh + y, key (y', x') -> x'*bh + y'
    to_cm = np.zeros_like(m1)
    for p in range(n_p):
        for q in range(n_l):
            (y, x), (yk, xk) = divmod(p, fw), divmod(q, bw)
            to_cm[x * fh + y, xk * bh + yk] = m1[p, q]
    m2 = diag(to_cm)
    back = np.zeros_like(m2)
    for p in range(n_p):
        for q in range(n_l):
            (y, x), (yk, xk) = divmod(p, fw), divmod(q, bw)
            back[p, q] = m2[x * fh + y, xk * bh + yk]
    return back


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 10**6))
def test_fuse_matches_the_index_formula_with_wraparound(fh, fw, bh, bw, seed):
    s = np.random.default_rng(seed).normal(size=(fh * fw, bh * bw))
    g = reference.attention_geometry((2 * fh, 2 * fw), (2 * bh, 2 * bw), 3, 1, 2, 3, True)
    np.testing.assert_allclose(reference.fuse_scores(s, g, 3), _fuse_by_loops(s, fh, fw, bh, bw), atol=1e-12)


def test_fuse_wraps_around_row_ends():
    """A score at the end of a row of queries/keys propagates to the start of the next row (not a clean 4-D shift)."""
    g = reference.attention_geometry((4, 4), (4, 4), 3, 1, 2, 3, True)  # 2×2 queries and keys
    s = np.zeros((4, 4))
    s[1, 1] = 1.0  # query (0, 1), key (0, 1): the last column of the first row
    fused = reference.fuse_scores(s, g, 3)
    assert fused[2, 2] > 0  # query (1, 0), key (1, 0): the next row-major neighbours, across the row end


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.sampled_from([1, 2, 3]), st.integers(0, 10**6))
def test_paste_matches_the_transposed_convolution_index_form(fh, fw, c, rate, seed):
    """§4.8: Y[i r - pt + u, j r - pl + v] += Σ_l A[(i,j), l] R_l[:, u, v], then ÷4."""
    rng = np.random.default_rng(seed)
    g = reference.attention_geometry((rate * fh, rate * fw), (rate * fh, rate * fw), 3, 1, rate, 3, True)
    a = rng.random((g.P, g.L))
    raw = rng.normal(size=(g.L, c, g.K, g.K))
    expected = np.zeros((c, g.H, g.W))
    for p in range(g.P):
        i, j = divmod(p, g.fw)
        patch = np.tensordot(a[p], raw, axes=1)
        for u in range(g.K):
            for v in range(g.K):
                y, x = i * rate - g.pt + u, j * rate - g.pl + v
                if 0 <= y < g.H and 0 <= x < g.W:
                    expected[:, y, x] += patch[:, u, v]
    np.testing.assert_allclose(reference.paste(a, raw, g, rate), expected / 4, atol=1e-12)


@given(st.integers(1, 6), st.integers(0, 10**6), st.sampled_from([1.0, 10.0]))
def test_masked_softmax_closed_forms(n_masked, seed, lam):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(5, 8))
    mm = np.ones(8)
    mm[rng.choice(8, size=min(n_masked, 8), replace=False)] = 0
    a = reference.masked_softmax(s, mm, lam, "official")
    e = np.exp(lam * s) * mm
    np.testing.assert_allclose(a, e / (e.sum(-1, keepdims=True) + (mm == 0).sum()), rtol=1e-12)
    exact = reference.masked_softmax(s, mm, lam, "exact")
    assert (a[:, mm == 0] == 0).all() and (exact[:, mm == 0] == 0).all()
    if mm.any():
        np.testing.assert_allclose(exact.sum(-1), 1.0, rtol=1e-12)
    else:
        assert (exact == 0).all() and (a == 0).all()


def test_valid_keys_counts_zero_padding_as_valid():
    """mm_l = 1 iff the 3×3 zero-padded window of the downsampled mask is all zero (§4.6)."""
    g = reference.attention_geometry((8, 8), (8, 8), 3, 1, 2, 3, True)
    mask = np.zeros((1, 1, 8, 8))
    mask[..., 0, 0] = 1  # the top-left pixel, kept by the downsampling (align corners keeps index 0)
    mm = reference.valid_keys(mask, g, 3, 1).reshape(4, 4)
    expected = np.ones((4, 4))
    expected[:2, :2] = 0
    np.testing.assert_array_equal(mm, expected)


def test_reference_rejects_non_float_arrays():
    f = np.zeros((1, 2, 4, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="f must be a floating-point array"):
        reference.contextual_attention(f, f.astype(float))
