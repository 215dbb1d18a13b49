"""Hole-only inference equals the full generator inside the hole (spec §10): windows, attention on a window, inpaint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from deepfill_min.attention import contextual_attention
from deepfill_min.generator import Generator
from deepfill_min.holeonly import (
    _aligned,
    attention_window,
    hole_only_forward,
    hole_window,
    receptive_window,
    run_window,
)
from deepfill_min.inpaint import inpaint
from deepfill_min.weights import load_generator, save_generator
from reference.model import generator_forward

OPTIONS = [{}, {"mask_softmax": "exact"}, {"paste_norm": "overlap"}, {"fuse": False}, {"fuse_k": 7}]


def _holes(draw, H: int, W: int) -> np.ndarray:
    """One to three boxes (some at the borders) and a few scattered pixels: several, irregular holes."""
    mask = np.zeros((H, W), bool)
    for _ in range(draw(st.integers(1, 3))):
        h, w = draw(st.integers(1, H // 2)), draw(st.integers(1, W // 2))
        t, l = draw(st.sampled_from([0, H - h, None])), draw(st.sampled_from([0, W - w, None]))
        t = draw(st.integers(0, H - h)) if t is None else t
        l = draw(st.integers(0, W - w)) if l is None else l
        mask[t : t + h, l : l + w] = True
    for _ in range(draw(st.integers(0, 4))):
        mask[draw(st.integers(0, H - 1)), draw(st.integers(0, W - 1))] = True
    if mask.all():
        mask[0, 0] = False
    return mask


@st.composite
def cases(draw):
    # up to 512: the receptive field reaches about 150 pixels, so the larger images have crops inside them
    H, W = 8 * draw(st.integers(2, 64)), 8 * draw(st.integers(2, 64))
    return H, W, _holes(draw, H, W), draw(st.sampled_from(OPTIONS)), draw(st.integers(0, 2**16))


def _inputs(H: int, W: int, hole: np.ndarray, seed: int, batch: int = 1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.from_numpy(hole).double()[None, None]
    x = (torch.rand(batch, 3, H, W, generator=g, dtype=torch.float64) * 2 - 1) * (1 - mask)
    return x, mask


@settings(max_examples=12)  # full forwards of up to 512×512 in float64: a few seconds each
@given(cases())
@example((512, 448, np.pad(np.ones((8, 12), bool), ((250, 254), (200, 236))), {}, 0))  # a small hole far inside
@example((512, 512, np.pad(np.ones((30, 20), bool), ((482, 0), (0, 492))), {"mask_softmax": "exact"}, 1))  # corner
@example((96, 160, np.pad(np.ones((40, 24), bool), ((0, 56), (120, 16))), {"fuse_k": 7}, 2))  # a wider fuse, top edge
def test_hole_only_equals_full_generator_in_the_hole(case):
    H, W, hole, options, seed = case
    torch.manual_seed(seed)
    G = Generator(2, **options).double().eval()
    x, mask = _inputs(H, W, hole, seed, batch=2)
    with torch.no_grad():
        full = G(x, mask)
    part = hole_only_forward(G, x, mask)
    inside = mask.bool().expand_as(x)
    torch.testing.assert_close(part.x_stage1[inside], full.x_stage1[inside], rtol=0, atol=1e-12)
    torch.testing.assert_close(part.x_stage2[inside], full.x_stage2[inside], rtol=0, atol=1e-12)
    assert torch.equal(part.x_stage1[~inside], x[~inside])  # x̃ is the image outside the hole


@given(st.integers(4, 24), st.integers(4, 24), st.sampled_from(OPTIONS), st.integers(0, 2**16), st.data())
def test_attention_window_equals_the_window_of_the_whole_layer(h2, w2, options, seed, data):
    """Any window of the output, any hole: the queries' fuse halo and the paste's overlaps are accounted for."""
    H, W = 2 * h2, 2 * w2
    g = torch.Generator().manual_seed(seed)
    f = torch.relu(torch.randn(2, 3, H, W, generator=g, dtype=torch.float64))
    mask = torch.from_numpy(_holes(data.draw, H, W)).double()[None, None]
    y0, x0 = data.draw(st.integers(0, H - 1)), data.draw(st.integers(0, W - 1))
    win = ((y0, data.draw(st.integers(y0 + 1, H))), (x0, data.draw(st.integers(x0 + 1, W))))
    full, _ = contextual_attention(f, f, mask, **options)
    # a small memory budget: the window's queries in bands of a few rows
    budget = data.draw(st.sampled_from([1 << 30, 20_000, 1]), label="memory_budget")
    part = attention_window(f, mask, win, **options, memory_budget=budget)
    torch.testing.assert_close(part, full[..., win[0][0] : win[0][1], win[1][0] : win[1][1]], rtol=0, atol=1e-12)


def test_hole_only_matches_the_numpy_reference():
    H, W = 192, 256
    hole = np.zeros((H, W), bool)
    hole[150:192, 10:40] = True  # at the bottom border
    hole[20:26, 200:230] = True
    torch.manual_seed(1)
    G = Generator(4).double().eval()
    x, mask = _inputs(H, W, hole, 1)
    _, x2 = generator_forward(G.numpy_params(), x.numpy(), mask.numpy())
    part = hole_only_forward(G, x, mask).x_stage2.numpy()
    np.testing.assert_allclose(part[:, :, hole], x2[:, :, hole], rtol=0, atol=1e-10)


@pytest.mark.parametrize(("stack", "scale"), [(("conv1", "conv17"), 1), (("allconv11", "allconv17"), 4)])
def test_receptive_window_is_the_gradients_support(stack, scale):
    """The window `receptive_window` computes is exactly where the gradient of one output pixel is nonzero."""
    torch.manual_seed(0)
    G = Generator(4).double()
    layers = G.stack(*stack)
    H, W = 256 // scale, 320 // scale
    x = torch.randn(1, layers[0].in_channels, H, W, dtype=torch.float64, requires_grad=True)
    y = x
    for layer in layers:
        y = layer(y)
    for py, px in [(100, 37), (0, 0), (255, 319), (128, 160)]:
        grad = torch.autograd.grad(y[0, 0, py, px], x, retain_graph=True)[0].abs().sum((0, 1))
        rows, cols = grad.any(1).nonzero(), grad.any(0).nonzero()
        (t, b), (l, r) = receptive_window(layers, ((py, py + 1), (px, px + 1)), (H, W))
        assert t <= rows.min() and rows.max() < b and l <= cols.min() and cols.max() < r  # it contains the support
        assert (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1) == (t, b, l, r)  # tight


STACKS = [(("conv1", "conv17"), 1), (("xconv1", "xconv10_atrous"), 1), (("allconv11", "allconv17"), 4),
          (("pmconv9", "pmconv10"), 4)]  # fmt: skip


@given(st.sampled_from(STACKS), st.integers(2, 40), st.integers(2, 40), st.data())
def test_run_window_equals_the_whole_stack_on_the_window(stack_scale, h8, w8, data):
    """Any output window of any stack: narrowing after every layer changes none of the outputs asked for."""
    (first, last), scale = stack_scale
    torch.manual_seed(h8 * 41 + w8)
    G = Generator(2).double()
    layers = G.stack(first, last)
    H, W = 8 * h8 // scale, 8 * w8 // scale  # the input's size at its scale (the image's: 8 h8 × 8 w8)
    x = torch.randn(1, layers[0].in_channels, H, W, dtype=torch.float64)
    full = G._run(x, first, last)
    oh, ow = full.shape[-2:]
    y0, x0 = data.draw(st.integers(0, oh - 1)), data.draw(st.integers(0, ow - 1))
    out = ((y0, data.draw(st.integers(y0 + 1, oh))), (x0, data.draw(st.integers(x0 + 1, ow))))
    unit = 8 // scale
    win = _aligned(receptive_window(layers, out, (H, W)), unit, (H, W))
    part = run_window(layers, x[..., win[0][0] : win[0][1], win[1][0] : win[1][1]], win, out, (H, W), unit)
    (t, b), (l, r) = _aligned(out, unit * oh // H, (oh, ow))  # the window the result covers; `out` is exact
    assert part.shape[-2:] == (b - t, r - l)
    (y0, y1), (x0, x1) = out
    asked = part[..., y0 - t : y1 - t, x0 - l : x1 - l]
    torch.testing.assert_close(asked, full[..., y0:y1, x0:x1], rtol=0, atol=1e-12)


def test_hole_window_and_an_empty_mask():
    m = torch.zeros(16, 24, dtype=torch.bool)
    assert hole_window(m) is None
    m[3, 5] = m[9, 20] = True
    assert hole_window(m) == ((3, 10), (5, 21))
    G = Generator(4).double()
    x = torch.rand(1, 3, 16, 24, dtype=torch.float64)
    out = hole_only_forward(G, x, torch.zeros(1, 1, 16, 24, dtype=torch.float64))
    assert torch.equal(out.x_stage2, x)
    with pytest.raises(ValueError, match="mask must have batch 1"):
        hole_only_forward(G, torch.cat([x, x]), torch.zeros(2, 1, 16, 24, dtype=torch.float64))


def test_inpaint_hole_only_is_the_full_composite():
    """The default of `inpaint` (hole-only) and ``full=True`` give the same picture, also in the official pipeline."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (203, 301, 3), dtype=np.uint8)
    mask = np.zeros((203, 301), bool)
    mask[180:203, 3:40] = True
    mask[50:60, 200:230] = True
    torch.manual_seed(0)
    G = Generator(8).eval()
    for official in (False, True):
        a = inpaint(image, mask, G, official=official)
        b = inpaint(image, mask, G, official=official, full=True)
        diff = np.abs(a.image.astype(int) - b.image.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # float32 rounding can move a value across .5 or an integer
        known = ~mask[: a.image.shape[0], : a.image.shape[1]]
        assert np.array_equal(a.image[known], b.image[known])
        assert np.array_equal(a.coarse[known], a.image[known])  # hole-only: the coarse picture is the image outside


def test_load_generator_is_channels_last_on_the_cpu_and_fills_the_same(tmp_path):
    torch.manual_seed(0)
    G = Generator(8).eval()
    path = save_generator(G.state_dict(), {}, "rgb", tmp_path / "g.safetensors")
    loaded, _ = load_generator(path)
    assert loaded.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (96, 136, 3), dtype=np.uint8)
    mask = np.zeros((96, 136), bool)
    mask[30:60, 40:90] = True
    a, b = inpaint(image, mask, loaded).image, inpaint(image, mask, G).image
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
