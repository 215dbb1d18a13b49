"""The sources of a hole pixel are the layer's own weights for its query (spec §4.8), with their patches' boxes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfill_min.attention import attention_weights
from deepfill_min.generator import Generator
from deepfill_min.holeonly import hole_only_forward
from deepfill_min.sources import attention_sources
from deepfill_min.tf_ops import resize_nearest_ac


def _case(H: int, W: int, seed: int, **options):
    torch.manual_seed(seed)
    G = Generator(4, **options).double().eval()
    mask = torch.zeros(1, 1, H, W, dtype=torch.float64)
    mask[..., H // 4 : H // 2, W // 3 : W // 2 + 8] = 1
    x = (torch.rand(1, 3, H, W, dtype=torch.float64) * 2 - 1) * (1 - mask)
    return G, x, mask


@settings(max_examples=10)  # two generator forwards each
@given(st.sampled_from([(64, 64), (96, 128), (128, 72)]), st.integers(0, 2**16), st.data(),
       st.sampled_from([{}, {"mask_softmax": "exact"}]))  # fmt: skip
def test_sources_are_the_layers_weights(size, seed, data, options):
    H, W = size
    G, x, mask = _case(H, W, seed, **options)
    y, xx = data.draw(st.integers(0, H - 1)), data.draw(st.integers(0, W - 1))
    src = attention_sources(G, x, mask, (y, xx), k=4)
    # the oracle: the full generator's x̃ and features, and the unchunked weights of every query
    with torch.no_grad():
        xt = G(x, mask).x_stage1 * mask + x * (1 - mask)
        ones = torch.ones_like(x[:, :1])
        f = G._run(torch.cat([xt, ones, ones * mask], 1), "pmconv1", "pmconv6")
        a = attention_weights(f, f, resize_nearest_ac(mask, tuple(f.shape[-2:])), **options)[0]
    fw = W // 8
    row = a[(y // 8) * fw + xx // 8]
    top = row.topk(4)
    torch.testing.assert_close(torch.tensor(src.weights, dtype=row.dtype), top.values, rtol=0, atol=1e-12)
    assert src.weights == sorted(src.weights, reverse=True) and float(row.sum()) <= 1 + 1e-12
    assert src.query == (y // 8 * 8, xx // 8 * 8, 8, 8)
    bw = fw  # keys: one per cell of the 1/8 grid (stride 1, self-attention)
    for (u, v), (t, l, h, w), weight in zip(src.keys, src.boxes, src.weights, strict=True):
        assert float(row[u * bw + v]) == pytest.approx(weight, abs=1e-12)
        # the 16×16 raw patch of key (u, v) starts 4 pixels above and left of its 8×8 cell, clipped to the image
        assert (t, l) == (max(8 * u - 4, 0), max(8 * v - 4, 0))
        assert (t + h, l + w) == (min(8 * u + 12, H), min(8 * v + 12, W))


def test_sources_bad_arguments():
    G, x, mask = _case(64, 64, 0)
    with pytest.raises(ValueError, match="point must be"):
        attention_sources(G, x, mask, (64, 3))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        attention_sources(G, x, mask, (3, 3), k=0)
    with pytest.raises(ValueError, match="no contextual attention"):
        attention_sources(Generator(4, attention=False).double(), x, mask, (3, 3))


@settings(max_examples=10)  # a full and a hole-only forward each
@given(st.sampled_from([(64, 64), (96, 128), (128, 72), (40, 56)]), st.integers(0, 2**16),
       st.sampled_from([{}, {"mask_softmax": "exact"}]), st.booleans())  # fmt: skip
def test_hole_only_offsets_are_the_layers_offsets_in_the_hole(size, seed, options, corner):
    H, W = size
    G, x, mask = _case(H, W, seed, **options)
    if corner:  # a second hole in the bottom-left corner, not aligned to the 8x8 cells
        mask[..., H - 5 :, :7] = 1
        x = x * (1 - mask)
    with torch.no_grad():
        full = G(x, mask, return_offsets=True).offsets
    got = hole_only_forward(G, x, mask, return_offsets=True).offsets
    hole = mask[0, 0].reshape(H // 8, 8, W // 8, 8).amax((1, 3)) > 0  # the cells that hold a hole pixel
    assert got.shape == full.shape and torch.equal(got[0][:, hole], full[0][:, hole])
