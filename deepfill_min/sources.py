r"""Where the attention copied a pixel of the hole from: the top source patches of one query, with their weights.

Contextual attention fills the query at cell $(i, j)$ of the 1/8 grid (an 8×8 block of the image) with
$\sum_l a_{(i,j),l} R_l$, the attention-weighted raw patches of the background (spec §4.8). `attention_sources`
reads $a_{(i,j),\cdot}$ from the layer itself (`deepfill_min.holeonly.window_weights`, the same fused and masked
weights the paste uses, computed for this query alone) and returns the k largest with the image boxes of their raw
patches: key $(u, v)$'s 2r×2r patch at 1/4 resolution starts at row $u\,r s - p_t$ of the feature map, i.e. at
image row $4(u\,r s - p_t)$, and is 16×16 image pixels for the model's r = 2 (§4.1).

This is what an explorer shows on a click (`deepfill-min app` and notebook 7 build on it); the weights sum to at most
1 over all keys (the official masking gives the masked keys' share, $e^0$ each, to nobody). An explorer answers many
clicks on one image: `holeonly.attention_map` computes what they share once (stage 1 on a crop around the hole, the
attention branch's features on the whole image, the keys and their norms), the same map serves hole-only inference
with the flow of the hole's queries (`holeonly.hole_only_forward(..., return_offsets=True, amap=...)`), and
`top_sources` answers one click from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.tf_ops import same_padding

from .generator import Generator
from .holeonly import AttentionMap, attention_map, window_weights

Box = tuple[int, int, int, int]  # top, left, height, width in image pixels


@dataclass
class Sources:
    query: Box  # the query's cell of the 1/8 grid
    boxes: list[Box]  # the source patches, largest weight first (clipped to the image)
    weights: list[float]  # their attention weights
    keys: list[tuple[int, int]]  # their (row, column) on the grid of keys


@torch.no_grad()
def top_sources(amap: AttentionMap, point: tuple[int, int], k: int = 5) -> Sources:
    """The `k` heaviest sources of the query under image pixel `point` = (row, column)."""
    (H, W), g = amap.xt.shape[-2:], amap.prepared[0]
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
    fh, fw = amap.features.shape[-2:]
    scale = H // fh  # image pixels per feature pixel
    pt, pl = same_padding(fh, g.K, g.S)[0], same_padding(fw, g.K, g.S)[0]
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
