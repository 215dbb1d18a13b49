r"""Exact hole-only inference: compute only what can reach the hole (spec §10).

Inpainting returns the composite $x_2 \odot m + x \odot (1 - m)$: of the generator's output only $x_2$ inside the hole
is used. Removing a small object from a large photo should not cost a forward pass over every pixel, and it need not:

1. **Stage 1 on a crop.** $x_1$ is needed inside the hole only, so the coarse network runs on a crop around the hole
   as wide as its receptive field, and narrows layer by layer (`run_window`): after each layer only what the layers
   after it read is kept, so the dilated convs see little more than the hole plus their reach and the decoder little
   more than the hole.
2. **The attention branch's encoder on the whole image.** $\tilde x = x_1 m + x (1 - m)$ is the input image outside
   the hole, and every position of it is a key the attention may copy from: pmconv1-6 run everywhere.
3. **Attention for the needed queries only.** Contextual attention is evaluated for the queries whose pasted
   patches reach the window that pmconv9-10 read for the decoder, scored against all keys; the fuse's neighbouring
   queries (its *halo*, §4.5) enter through the same neighbour tables as the chunked layer.
4. **The hallucination branch, pmconv9-10 and the decoder on crops** around the hole, narrowing the same way; the
   decoder's output covers the hole's bounding box grown to multiples of 8 pixels.

**Why a crop gives exact values.** For a layer with kernel k, stride s and dilation d, output o reads the inputs
$[o s - p, \; o s - p + d(k-1)]$ ($p$ the TF-SAME padding before), and an upsampling conv's output reads its input
rows $\lfloor (o-1)/2 \rfloor \ldots \lfloor (o+1)/2 \rfloor$. Walking a window of outputs back through a stack of
layers (`receptive_window`) gives the window of inputs that can change it. A crop containing that window, with its
corners on multiples of 8 pixels (so every stride-2 layer and every ×2 upsampling stays on the image's grid), computes
every needed value from the same inputs as the full image; the crop's zero padding only differs from the image where
nothing needed reads it, and at the true image borders it is the same TF-SAME zeros. Narrowing keeps this: the
window each layer keeps holds what the next one reads (`needed_windows`), on the same grid of 8 image pixels. The
mask is resized for the attention on the whole image (align-corners nearest is not a uniform subsampling, §2.2).

The result equals the full computation to float rounding (`tests/test_holeonly.py`: random sizes, holes at the
borders, several holes, both masking modes, against the full torch path and the NumPy reference). With
``return_offsets`` the offsets of the queries computed come too: those of every cell that holds a hole pixel, as the
full path gives them (`inpaint`'s flow picture still takes the full path: it colours every query). `attention_map`
keeps x̃ and the attention branch's keys for an explorer (`deepfill_min.sources`), which asks many questions of one
image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reference.tf_ops import same_padding

from .allocator import sized_by_image
from .attention import DEFAULT_MEMORY_BUDGET, _prepare, default_chunk_size, halo_scores, masked_softmax
from .fuse import fuse_plan_window
from .generator import Generator, GeneratorOutput, check_inputs
from .keys import raw_scores
from .layers import GenConv, GenDeconv
from .paste import blocks, normalised, paste
from .tf_ops import memory_format, resize_nearest_ac

Window = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right)), half-open


def _axis_inputs(layer: GenConv, lo: int, hi: int, n_in: int) -> tuple[int, int]:
    """Inputs [lo', hi') along one axis of length `n_in` that outputs [lo, hi) of `layer` read."""
    if isinstance(layer, GenDeconv):  # a 3×3 conv on the ×2 upsampled input, which repeats each input twice
        lo, hi = max(lo - 1, 0), min(hi + 1, 2 * n_in)
        return lo // 2, (hi - 1) // 2 + 1
    k, s, d = layer.kernel_size[0], layer.stride[0], layer.dilation[0]
    before = same_padding(n_in, k, s, d)[0]
    return max(lo * s - before, 0), min((hi - 1) * s - before + d * (k - 1) + 1, n_in)


def _sizes(layers: list[GenConv], size: tuple[int, int]) -> list[tuple[int, int]]:
    """The input size of each layer of the stack, then its output's."""
    sizes = [size]
    for layer in layers:
        h, w = sizes[-1]
        s = layer.stride[0]
        sizes.append((2 * h, 2 * w) if isinstance(layer, GenDeconv) else (-(-h // s), -(-w // s)))
    return sizes


def needed_windows(layers: list[GenConv], out: Window, size: tuple[int, int]) -> list[Window]:
    """The window of each layer's input that the stack's outputs in `out` depend on (first layer first), then `out`."""
    sizes, wins = _sizes(layers, size), [out]
    for layer, (h, w) in zip(reversed(layers), reversed(sizes[:-1]), strict=True):
        wins.insert(0, (_axis_inputs(layer, *wins[0][0], h), _axis_inputs(layer, *wins[0][1], w)))
    return wins


def receptive_window(layers: list[GenConv], out: Window, size: tuple[int, int]) -> Window:
    """The window of the stack's input (of `size`) that its outputs in `out` depend on."""
    return needed_windows(layers, out, size)[0]


def _aligned(win: Window, unit: int, size: tuple[int, int]) -> Window:
    """`win` grown to multiples of `unit` (the image sizes are multiples of it)."""
    return tuple((lo // unit * unit, min(-(-hi // unit) * unit, n)) for (lo, hi), n in zip(win, size, strict=True))


def _scaled(win: Window, factor: int) -> Window:
    return tuple((lo * factor, hi * factor) for lo, hi in win)


def _area(win: Window) -> int:
    return (win[0][1] - win[0][0]) * (win[1][1] - win[1][0])


def _crop(x: torch.Tensor, win: Window) -> torch.Tensor:
    return x[..., win[0][0] : win[0][1], win[1][0] : win[1][1]]


def run_window(layers: list[GenConv], x: torch.Tensor, win: Window, out: Window, size: tuple[int, int],
               unit: int) -> torch.Tensor:  # fmt: skip
    """The stack's outputs in `out` (grown to `unit`), from `x`, the window `win` of its input (of `size`).

    `win` must hold `receptive_window(layers, out, size)`, its corners on multiples of `unit`: the image's 8 pixels
    at the input's scale. After each layer the result is cut down to what the layers after it read (a window on the
    same grid), so that the dilated convs and the decoder run on little more than the hole, not on the whole crop.
    """
    needs = needed_windows(layers, out, size)
    sizes = _sizes(layers, size)
    for layer, need, n_out in zip(layers, needs[1:], sizes[1:], strict=True):
        x = layer(x)
        if isinstance(layer, GenDeconv):
            win, unit = _scaled(win, 2), unit * 2
        elif layer.stride[0] == 2:
            win, unit = tuple((lo // 2, -(-hi // 2)) for lo, hi in win), unit // 2
        keep = _aligned(need, unit, n_out)
        if _area(keep) < 0.75 * _area(win):  # else the copy would cost about what it saves
            (t, b), (l, r) = keep
            cut = x[..., t - win[0][0] : b - win[0][0], l - win[1][0] : r - win[1][0]]
            x, win = cut.contiguous(memory_format=memory_format(x)), keep
    (t, b), (l, r) = _aligned(out, unit, sizes[-1])
    return x[..., t - win[0][0] : b - win[0][0], l - win[1][0] : r - win[1][0]]


def hole_window(mask: torch.Tensor) -> Window | None:
    """The bounding box of the hole pixels of a (H, W) mask, or None if there are none."""
    rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
    if len(rows) == 0:
        return None
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


def _options(options: dict) -> tuple:
    """The layer's keywords with their defaults: ksize, stride, rate, fuse_k, fuse, mask_softmax, paste_norm, scale."""
    get = options.get
    masking = get("mask_softmax", "official"), get("paste_norm", "official")
    return (get("ksize", 3), get("stride", 1), get("rate", 2), get("fuse_k", 3), get("fuse", True), *masking,
            float(get("softmax_scale", 10.0)))  # fmt: skip


def prepare_window(f: torch.Tensor, mask: torch.Tensor, **options) -> tuple:
    """What every window of self-attention on `f` shares: geometry, query patches, keys, their norms, valid keys."""
    ksize, stride, rate, fuse_k, fuse, mask_softmax, paste_norm, _ = _options(options)
    return _prepare(f, f, mask, ksize, stride, rate, fuse_k, fuse, False, mask_softmax, paste_norm)


def window_weights(prepared: tuple, rows: tuple[int, int], cols: tuple[int, int], **options) -> torch.Tensor:
    """Attention weights (B, q, L) of the queries rows × cols of f↓ (row-major), fused and masked as the layer does."""
    g, fp, w, inv_norm, mm, keys = prepared
    _, _, _, fuse_k, fuse, mask_softmax, _, scale = _options(options)
    with torch.autocast(fp.device.type, enabled=False):
        if fuse:
            plan = fuse_plan_window(g.fh, g.fw, g.bh, g.bw, fuse_k, rows, cols, fp.device)
            s = halo_scores(fp, w, inv_norm, g, fuse_k, plan, keys.scored)
        else:
            q = (np.arange(*rows)[:, None] * g.fw + np.arange(*cols)).ravel()
            s = raw_scores(fp[:, torch.as_tensor(q, device=fp.device)], w, inv_norm, keys.scored)
        return masked_softmax(s, mm, scale, mask_softmax == "exact")


def attention_window(f: torch.Tensor, mask: torch.Tensor, win: Window, prepared: tuple | None = None,
                     offsets: torch.Tensor | None = None, **options) -> torch.Tensor:  # fmt: skip
    """`contextual_attention(f, f, mask, **options)[0]` on the window `win` of its output only (self-attention).

    The queries whose 2r×2r pasted patches cover `win` are scored against every key of f, a band of query rows at a
    time within the layer's memory budget; the fuse reads their neighbours' raw scores through `fuse_plan_window`.
    Returns (B, C, win height, win width). `prepared` (`prepare_window` of f and mask) may be passed if already
    made; `offsets` (B, 2, rows, columns of f↓), if given, receives those queries' offsets (§4.7, the argmax of the
    same weights, as ``return_offsets`` gives them).
    """
    _, stride, rate, _, _, _, paste_norm, _ = _options(options)
    prepared = prepare_window(f, mask, **options) if prepared is None else prepared
    g, fp = prepared[:2]
    (y0, y1), (x0, x1) = win
    # block I of the paste canvas holds quarters of the patches of queries I - 1 and I (§4.8)
    i0, i1 = max((y0 + g.pt) // rate - 1, 0), min((y1 - 1 + g.pt) // rate + 1, g.fh)
    j0, j1 = max((x0 + g.pl) // rate - 1, 0), min((x1 - 1 + g.pl) // rate + 1, g.fw)
    bl = blocks(f, g, rate, prepared[-1], stride)
    budget = options.get("memory_budget", DEFAULT_MEMORY_BUDGET)
    band = max(1, default_chunk_size(g, f.shape[0], fp.element_size(), budget) // (j1 - j0))
    y = bl[0].new_zeros(f.shape[0], f.shape[1], (i1 - i0 + 1) * rate, (j1 - j0 + 1) * rate)  # blocks i0 … i1, j0 … j1
    for r0 in range(i0, i1, band):
        r1 = min(r0 + band, i1)
        a = window_weights(prepared, (r0, r1), (j0, j1), **options)
        y[..., (r0 - i0) * rate : (r1 - i0 + 1) * rate, :] += paste(a, bl, g, rate, stride, r1 - r0, j1 - j0)
        if offsets is not None:  # best key (row, column) minus the query's own cell
            best = a.argmax(-1).view(-1, r1 - r0, j1 - j0)
            offsets[:, 0, r0:r1, j0:j1] = best // g.lw - torch.arange(r0, r1, device=best.device)[:, None]
            offsets[:, 1, r0:r1, j0:j1] = best % g.lw - torch.arange(j0, j1, device=best.device)
    y = normalised(y, paste_norm, g, rate, (i0 * rate, j0 * rate))
    oy, ox = i0 * rate - g.pt, j0 * rate - g.pl  # the canvas's first pixel in f's coordinates
    return y[..., y0 - oy : y1 - oy, x0 - ox : x1 - ox]


@torch.no_grad()
def coarse_composite(generator: Generator, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""$\tilde x = x_1 m + x (1 - m)$ with stage 1 computed on a crop around the hole only.

    `x`: (B, 3, H, W) with the hole zeroed, `mask`: (1, 1, H, W); without a hole, `x` itself.
    """
    H, W = x.shape[-2:]
    hole = hole_window(mask[0, 0] > 0)
    if hole is None:
        return x
    layers = generator.stack("conv1", "conv17")
    c1 = _aligned(receptive_window(layers, hole, (H, W)), 8, (H, W))
    xc, mc = _crop(x, c1), _crop(mask, c1)
    ones = torch.ones_like(xc[:, :1])
    x1 = run_window(layers, torch.cat([xc, ones, ones * mc], 1), c1, hole, (H, W), 8).clamp(-1, 1)
    h8 = _aligned(hole, 8, (H, W))  # the window x1 covers
    xt = x.clone()
    xh, mh = _crop(x, h8), _crop(mask, h8)
    _crop(xt, h8).copy_(x1 * mh + xh * (1 - mh))
    return xt


@dataclass
class AttentionMap:
    """Stage 2's attention branch for one image and hole, computed once: what hole-only inference and every question
    about the sources of a hole pixel (`deepfill_min.sources`) share."""

    xt: torch.Tensor  # x̃ = x1 m + x (1 - m), stage 1 computed around the hole
    features: torch.Tensor  # pmconv6 of x̃ on the whole image (B, C, H/4, W/4): the keys and the queries
    mask: torch.Tensor  # the hole at the features' size
    prepared: tuple  # `prepare_window` of both
    options: dict  # the layer's keywords

    @property
    def cell(self) -> tuple[int, int]:
        """Image pixels per query (8×8 for the model)."""
        g = self.prepared[0]
        return self.xt.shape[-2] // g.fh, self.xt.shape[-1] // g.fw


@torch.no_grad()
@sized_by_image  # the allocator's policy for the image's size (`allocator`)
def attention_map(generator: Generator, x: torch.Tensor, mask: torch.Tensor) -> AttentionMap:
    """The `AttentionMap` of `x` ((B, 3, H, W) in [-1, 1], hole zeroed) and `mask` ((1, 1, H, W), 1 = hole)."""
    if not generator.attention:
        raise ValueError("the generator has no contextual attention (attention=False): there are no sources")
    xt = coarse_composite(generator, x, mask)
    ones = torch.ones_like(xt[:, :1])
    f = generator._run(torch.cat([xt, ones, ones * mask], 1), "pmconv1", "pmconv6")
    options = generator.contextual_attention.kwargs
    m = resize_nearest_ac(mask, tuple(f.shape[-2:]))
    return AttentionMap(xt, f, m, prepare_window(f, m, **options), options)


@torch.no_grad()
@sized_by_image  # the allocator's policy for the image's size (`allocator`)
def hole_only_forward(generator: Generator, x: torch.Tensor, mask: torch.Tensor, return_offsets: bool = False,
                      amap: AttentionMap | None = None) -> GeneratorOutput:  # fmt: skip
    """`generator(x, mask)` where it matters: both outputs are exact inside the hole (to float rounding).

    `x`: (B, 3, H, W) with the hole zeroed; `mask`: (1, 1, H, W), 1 = hole. Outside the windows computed, the
    outputs hold `x`: ``x_stage1`` is $\tilde x$ (stage 1 in the hole, the input elsewhere), ``x_stage2`` is the
    refined result on the hole's bounding box grown to multiples of 8 pixels. ``offsets`` is None unless
    `return_offsets`: then the offsets of the queries computed (every cell that holds a hole pixel among them, equal
    to the full generator's there), 0 at the others. `amap` (`attention_map` of the same x and mask) saves its work
    if already made.
    """
    check_inputs(x, mask)
    if mask.shape[0] != 1:
        raise ValueError(f"mask must have batch 1 for hole-only inference, got {mask.shape[0]}")
    H, W = x.shape[-2:]
    hole = hole_window(mask[0, 0] > 0)
    G, ones = generator, torch.ones_like(x[:, :1])
    offsets = x.new_zeros(x.shape[0], 2, H // 8, W // 8, dtype=torch.long) if return_offsets else None
    if hole is None:
        return GeneratorOutput(x, x, offsets)
    # 1. stage 1 on a crop: x1 inside the hole, then x̃ = x1 m + x (1 - m); with attention, the keys of x̃
    if G.attention and amap is None:
        amap = attention_map(G, x, mask)
    xt = amap.xt if G.attention else coarse_composite(G, x, mask)
    xnow = torch.cat([xt, ones, ones * mask], 1)
    # 2. the windows of stage 2: the decoder's input (1/4 resolution, on the grid of 8 image pixels), each branch's
    size4, decoder = (H // 4, W // 4), G.stack("allconv11", "allconv17")
    w11 = _aligned(receptive_window(decoder, hole, size4), 2, size4)
    xconv = G.stack("xconv1", "xconv10_atrous")
    c2 = _aligned(receptive_window(xconv, w11, (H, W)), 8, (H, W))
    z = run_window(xconv, _crop(xnow, c2), c2, w11, (H, W), 8)
    if G.attention:
        # 3. queries for the window that pmconv9-10 read only, against every key of the image
        pmconv = G.stack("pmconv9", "pmconv10")
        wy = _aligned(receptive_window(pmconv, w11, size4), 2, size4)
        y = attention_window(amap.features, amap.mask, wy, amap.prepared, offsets, **amap.options)
        z = torch.cat([z, run_window(pmconv, y, wy, w11, size4, 2)], 1)
    # 4. the decoder, from w11 to the hole
    x2 = x.clone()
    x2_hole = run_window(decoder, z, w11, hole, size4, 2)
    _crop(x2, _aligned(hole, 8, (H, W))).copy_(x2_hole.clamp(-1, 1))
    return GeneratorOutput(xt, x2, offsets)
