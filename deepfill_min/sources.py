r"""Where the attention copied a pixel of the hole from: the top source patches of one query, with their weights.

Contextual attention fills the query at cell $(i, j)$ of the 1/8 grid (an 8×8 block of the image) with
$\sum_l a_{(i,j),l} R_l$, the attention-weighted raw patches of the background (spec §4.8). `attention_sources`
reads $a_{(i,j),\cdot}$ from the layer itself (`deepfill_min.holeonly.window_weights`, the same fused and masked
weights the paste uses, computed for this query alone) and returns the k largest with the image boxes of their raw
patches: key $(u, v)$'s 2r×2r patch at 1/4 resolution starts at row $u\,r s - p_t$ of the feature map, i.e. at
image row $4(u\,r s - p_t)$, and is 16×16 image pixels for the model's r = 2 (§4.1).

This is what an explorer shows on a click (`deepfill-min app` and notebook 7 build on it); the weights sum to at most
1 over all keys (the official masking gives the masked keys' share, $e^0$ each, to nobody). An explorer answers many
clicks on one image: `attention_map` computes what they share once (stage 1 on a crop around the hole, the attention
branch's features on the whole image, the keys and their norms), `top_sources` answers one click from it, and
`hole_offsets` gives the flow of the hole's queries alone (the argmax of the same weights, §4.7), so an explorer's
flow picture costs the hole's queries, not a full forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.tf_ops import same_padding

from .generator import Generator
from .holeonly import coarse_composite, prepare_window, window_weights
from .tf_ops import resize_nearest_ac

Box = tuple[int, int, int, int]  # top, left, height, width in image pixels


@dataclass
class Sources:
    query: Box  # the query's cell of the 1/8 grid
    boxes: list[Box]  # the source patches, largest weight first (clipped to the image)
    weights: list[float]  # their attention weights
    keys: list[tuple[int, int]]  # their (row, column) on the grid of keys


@dataclass
class AttentionMap:
    """What every question about one image and hole shares, computed once: the layer's prepared keys and queries."""

    prepared: tuple  # `holeonly.prepare_window` of the attention branch's features
    options: dict  # the layer's keywords
    image_size: tuple[int, int]
    feature_size: tuple[int, int]  # the features the attention reads (1/4 of the image)

    @property
    def cell(self) -> tuple[int, int]:
        """Image pixels per query (8×8 for the model)."""
        g = self.prepared[0]
        return self.image_size[0] // g.fh, self.image_size[1] // g.fw


@torch.no_grad()
def attention_map(generator: Generator, x: torch.Tensor, mask: torch.Tensor) -> AttentionMap:
    """The attention branch's keys and queries for `x` ((1, 3, H, W) in [-1, 1], hole zeroed) and `mask`."""
    if not generator.attention:
        raise ValueError("the generator has no contextual attention (attention=False): there are no sources")
    G, options = generator, generator.contextual_attention.kwargs
    # x̃ (stage 1 in the hole, the image elsewhere), then the attention branch's features: keys and queries
    xt = coarse_composite(G, x, mask)
    ones = torch.ones_like(xt[:, :1])
    f = G._run(torch.cat([xt, ones, ones * mask], 1), "pmconv1", "pmconv6")
    prepared = prepare_window(f, resize_nearest_ac(mask, tuple(f.shape[-2:])), **options)
    return AttentionMap(prepared, options, tuple(x.shape[-2:]), tuple(f.shape[-2:]))


@torch.no_grad()
def top_sources(amap: AttentionMap, point: tuple[int, int], k: int = 5) -> Sources:
    """The `k` heaviest sources of the query under image pixel `point` = (row, column)."""
    (H, W), g = amap.image_size, amap.prepared[0]
    y, xx = point
    if not (0 <= y < H and 0 <= xx < W):
        raise ValueError(f"point must be (row, column) inside the {H}x{W} image, got {point}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    cell = amap.cell
    i, j = min(y // cell[0], g.fh - 1), min(xx // cell[1], g.fw - 1)
    a = window_weights(amap.prepared, (i, i + 1), (j, j + 1), **amap.options)[0, 0]
    top = a.topk(min(k, a.numel()))
    rate, stride = amap.options.get("rate", 2), amap.options.get("stride", 1)
    scale = H // amap.feature_size[0]  # image pixels per feature pixel
    pt, pl = same_padding(amap.feature_size[0], g.K, g.S)[0], same_padding(amap.feature_size[1], g.K, g.S)[0]
    boxes, keys = [], []
    for key in top.indices.tolist():
        u, v = divmod(key, g.lw)
        t, l = (u * rate * stride - pt) * scale, (v * rate * stride - pl) * scale
        t0, l0 = max(t, 0), max(l, 0)
        boxes.append((t0, l0, min(t + g.K * scale, H) - t0, min(l + g.K * scale, W) - l0))
        keys.append((u, v))
    query = (i * cell[0], j * cell[1], cell[0], cell[1])
    return Sources(query, boxes, top.values.tolist(), keys)


def attention_sources(generator: Generator, x: torch.Tensor, mask: torch.Tensor, point: tuple[int, int],
                      k: int = 5) -> Sources:  # fmt: skip
    """The `k` heaviest sources of the query under image pixel `point` = (row, column).

    `x`: (1, 3, H, W) in [-1, 1] with the hole zeroed and `mask`: (1, 1, H, W), 1 = hole, as the generator takes them.
    """
    return top_sources(attention_map(generator, x, mask), point, k)


@torch.no_grad()
def hole_offsets(amap: AttentionMap, mask: torch.Tensor) -> torch.Tensor:
    """The offsets (1, 2, rows, columns) of the queries whose cell holds a hole pixel of `mask` ((1, 1, H, W)), 0 at
    the others: the layer's best key minus the query's own cell (spec §4.7), as ``return_offsets`` gives them, computed
    for the hole's queries alone (a band of rows at a time)."""
    g, (ch, cw) = amap.prepared[0], amap.cell
    hole = mask[0, 0, : g.fh * ch, : g.fw * cw].reshape(g.fh, ch, g.fw, cw).amax((1, 3)) > 0
    offsets = torch.zeros(1, 2, g.fh, g.fw, dtype=torch.long, device=mask.device)
    rows, cols = hole.any(1).nonzero()[:, 0], hole.any(0).nonzero()[:, 0]
    if len(rows) == 0:
        return offsets
    (i0, i1), (j0, j1) = (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)
    band = max(1, 4096 // (j1 - j0))
    for r0 in range(i0, i1, band):
        r1 = min(r0 + band, i1)
        best = window_weights(amap.prepared, (r0, r1), (j0, j1), **amap.options)[0].argmax(-1).view(r1 - r0, j1 - j0)
        gy = torch.arange(r0, r1, device=best.device)[:, None]
        gx = torch.arange(j0, j1, device=best.device)[None]
        offsets[0, :, r0:r1, j0:j1] = torch.stack([best // g.lw - gy, best % g.lw - gx])
    return offsets * hole
