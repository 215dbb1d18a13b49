"""Pruned keys (`deepfill_min.keys`): the left-out score columns and paste blocks cannot change the layer's output."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import attention_cases

import reference
from deepfill_min import attention, contextual_attention, keys
from deepfill_min.keys import key_subset
from deepfill_min.paste import blocks, paste
from reference.geometry import attention_geometry


def _t(x):
    return None if x is None else torch.from_numpy(x)


@st.composite
def key_grids(draw):
    """A self-attention geometry (fh = bh, fw = bw), a fuse size and the valid keys of a random mask."""
    h, w, k = draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.sampled_from([1, 2, 3, 3, 4, 5]))
    g = attention_geometry((2 * h, 2 * w), (2 * h, 2 * w), 3, 1, 2, k, True)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    valid = rng.random(g.L) < draw(st.sampled_from([0.1, 0.3, 0.7]))
    return g, k, valid


@given(key_grids())
def test_scored_keys_are_the_columns_that_valid_keys_fused_scores_read(grid):
    g, k, valid = grid
    with mock.patch.object(keys, "KEEP_AT_MOST", 1.0):
        scored = key_subset(torch.from_numpy(valid[None].astype(np.float64)), g, k, True).scored
    scored = set(range(g.L)) if scored is None else set(scored.tolist())
    # brute force through the oracle's fuse: which raw-score columns reach a valid key's fused score
    read = set()
    for j in range(g.L):
        s = np.zeros((g.P, g.L))
        s[:, j] = 1.0
        if (reference.fuse_scores(s, g, k)[:, valid] != 0).any():
            read.add(j)
    assert read <= scored
    if min(g.fh, g.fw) >= k:  # every shift has an interior query: nothing more than needed is scored
        assert scored == read


def test_a_large_hole_leaves_out_a_quarter_of_the_keys():
    """512² generator's attention shape (128² features, a 64² hole): 3,072 of 4,096 columns, 3,136 of 4,225 blocks."""
    f = torch.zeros(1, 1, 128, 128)
    mask = torch.zeros(1, 1, 128, 128)
    mask[..., 32:96, 32:96] = 1
    g, *_, mm, ks = attention._prepare(f, f, mask, 3, 1, 2, 3, True, False, "official", "official")
    assert int(mm.sum()) == 2940 and len(ks.scored) == 3072
    beta, nb, used = blocks(f, g, 2, ks)
    assert nb == (65, 65) and len(used) == 3136 and beta.shape[-1] == 3136


def _junk_scores(q, w, inv_norm, scored):
    """Raw scores with large random values instead of zeros in the columns that are not scored."""
    s = keys.raw_scores(q, w, inv_norm, scored)
    if scored is not None:
        junk = torch.empty_like(s).uniform_(-100, 100, generator=torch.Generator().manual_seed(0))
        kept = torch.zeros(s.shape[-1], dtype=torch.bool)
        kept[scored] = True
        s = torch.where(kept, s, junk)
    return s


@given(attention_cases())
def test_pruning_matches_the_reference_and_the_left_out_scores_are_never_read(case):
    y_ref, _ = reference.contextual_attention(case["f"], case["b"], case["mask"], **case["kwargs"])
    args = (_t(case["f"]), _t(case["b"]), _t(case["mask"]))
    with mock.patch.object(keys, "KEEP_AT_MOST", 1.0), mock.patch.object(attention, "raw_scores", _junk_scores):
        y, _ = contextual_attention(*args, **case["kwargs"])
        y_chunked, _ = contextual_attention(*args, **case["kwargs"], chunk_size=3)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y_chunked.numpy(), y_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride", [1, 2])
def test_the_paste_over_the_covered_blocks_equals_the_full_paste(stride):
    rng = np.random.default_rng(3)
    b = torch.from_numpy(rng.normal(size=(2, 3, 24, 20)))
    g = attention_geometry((24, 20), (24, 20), 3, stride, 2, 3, False)
    valid = rng.random(g.L) < 0.3
    a = torch.from_numpy(rng.random((2, g.P, g.L)) * valid)  # weights on valid keys only, as the softmax gives
    with mock.patch.object(keys, "KEEP_AT_MOST", 1.0):
        ks = key_subset(torch.from_numpy(valid[None].astype(np.float64)), g, 3, False)
        pruned = blocks(b, g, 2, ks, stride)
    assert pruned[2] is not None and len(pruned[2]) < pruned[1][0] * pruned[1][1]
    full = paste(a, blocks(b, g, 2), g, 2, stride, g.fh, g.fw)
    torch.testing.assert_close(paste(a, pruned, g, 2, stride, g.fh, g.fw), full, rtol=1e-12, atol=1e-12)


def test_gradients_with_pruned_keys_equal_the_unpruned_ones():
    rng = np.random.default_rng(5)
    x = torch.from_numpy(np.maximum(rng.normal(size=(2, 4, 16, 16)), 0) * 0.2)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 3:13, 4:14] = 1
    grads = []
    for keep in (1.0, -1.0):  # pruning forced, pruning off
        f, b = x.clone().requires_grad_(), (x * (1 - mask)).requires_grad_()
        with mock.patch.object(keys, "KEEP_AT_MOST", keep):
            scored = attention._prepare(f, b, mask, 3, 1, 2, 3, True, False, "official", "official")[-1].scored
            assert (scored is not None) == (keep > 0)
            y, _ = contextual_attention(f, b, mask)
        y.pow(2).sum().backward()
        grads.append((f.grad, b.grad))
    for g_pruned, g_full in zip(*grads, strict=True):
        torch.testing.assert_close(g_pruned, g_full, rtol=1e-10, atol=1e-12)
