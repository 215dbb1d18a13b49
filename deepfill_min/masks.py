r"""Holes for training: random boxes (spec §8), free-form brush strokes, and the spatial discount (§6).

**Boxes.** A bounding box of the configured size (128×128 in a 256×256 image) is placed uniformly at random,
$t \sim U\{m_v, …, H - m_v - h - 1\}$ (TF's ``random_uniform`` has an exclusive maximum), and the hole inside it is
shrunk by a random $\delta_h \in \{0, …, \Delta_h / 2\}$ on both sides, so the holes are 96 to 128 pixels high,
centred in their box. Two modes:

* ``"shared"``: one box and one hole for the whole batch (the official code);
* ``"per_sample"``: each sample has its own (the default for training from scratch). The local critic's crop follows
  each sample's own box.

**Brush strokes** (an option): thick random polylines, as DeepFill v2 introduced them. v1 was trained on rectangles
only and its official weights do badly on irregular holes; a model trained here with strokes learns them.

**Spatial discount.** The L1 loss in the hole weighs a pixel by $\gamma^{d}$, $d$ its distance to the box border:
$SD_{ij} = \gamma^{\min(i,\ h-i,\ j,\ w-j)}$. Official details kept: the distance is to the *box*, not the shrunk
hole; it is asymmetric (row 0 weighs 1, row $h-1$ weighs $\gamma$); $\gamma = 0.9$ in the code (the paper says 0.99).

All randomness comes from a ``torch.Generator``, so a run that saves its state resumes exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

MASK_MODES = ("shared", "per_sample")


def check_box_fits(image_size: tuple[int, int], hole_size: tuple[int, int], margin: tuple[int, int]) -> None:
    """A ValueError unless a box of `hole_size` has at least one position inside the `margin`s of `image_size`."""
    (H, W), (h, w), (mv, mh) = image_size, hole_size, margin
    if H - 2 * mv - h < 1 or W - 2 * mh - w < 1:
        raise ValueError(f"hole_size {hole_size} with margin {margin} does not fit in image_size {image_size}")


def random_bbox(
    n: int, image_size: tuple[int, int], hole_size: tuple[int, int], margin: tuple[int, int] = (0, 0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # fmt: skip
    """`n` boxes (top, left, height, width) as an int64 tensor (n, 4), placed uniformly inside the margins."""
    check_box_fits(image_size, hole_size, margin)
    (H, W), (h, w), (mv, mh) = image_size, hole_size, margin
    top = torch.randint(mv, H - mv - h, (n,), generator=generator)
    left = torch.randint(mh, W - mh - w, (n,), generator=generator)
    return torch.stack([top, left, torch.full_like(top, h), torch.full_like(top, w)], dim=1)


def bbox2mask(
    bboxes: torch.Tensor, image_size: tuple[int, int], max_delta: tuple[int, int] = (32, 32),
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # fmt: skip
    """Holes (n, 1, H, W), 1 = hole: each box shrunk by a random δ ∈ {0, …, max_delta/2} on both sides."""
    n = bboxes.shape[0]
    mask = torch.zeros(n, 1, *image_size)
    dh = torch.randint(0, max_delta[0] // 2 + 1, (n,), generator=generator)
    dw = torch.randint(0, max_delta[1] // 2 + 1, (n,), generator=generator)
    for i, (t, l, h, w) in enumerate(bboxes.tolist()):
        mask[i, :, t + dh[i] : t + h - dh[i], l + dw[i] : l + w - dw[i]] = 1
    return mask


def brush_stroke_mask(
    n: int, image_size: tuple[int, int], generator: torch.Generator | None = None, max_strokes: int = 4,
) -> torch.Tensor:  # fmt: skip
    """Free-form holes (n, 1, H, W): 1-`max_strokes` thick polylines with round joints, sized to the image."""
    H, W = image_size
    scale = math.sqrt(H * W) / 256

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand((), generator=generator).item()

    masks = []
    for _ in range(n):
        canvas = Image.new("L", (W, H), 0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(uniform(1, max_strokes + 1))):
            width = int(uniform(12, 40) * scale)
            x, y = uniform(0, W), uniform(0, H)
            angle = uniform(0, 2 * math.pi)
            points = [(x, y)]
            for _ in range(int(uniform(4, 12))):
                angle += uniform(-math.pi / 4, math.pi / 4)
                length = uniform(10, 40) * scale
                x = min(max(x + length * math.cos(angle), 0), W - 1)
                y = min(max(y + length * math.sin(angle), 0), H - 1)
                points.append((x, y))
            draw.line(points, fill=255, width=width)
            for px, py in points:
                draw.ellipse((px - width / 2, py - width / 2, px + width / 2, py + width / 2), fill=255)
        masks.append(torch.from_numpy(np.asarray(canvas) > 0))
    return torch.stack(masks)[:, None].float()


def spatial_discount(hole_size: tuple[int, int], gamma: float = 0.9) -> torch.Tensor:
    r"""$SD_{ij} = \gamma^{\min(i,\ h-i,\ j,\ w-j)}$ over the box, shape (1, 1, h, w) (§6)."""
    h, w = hole_size
    i = torch.arange(h, dtype=torch.float64)[:, None]
    j = torch.arange(w, dtype=torch.float64)[None, :]
    d = torch.minimum(torch.minimum(i, h - i), torch.minimum(j, w - j))
    return (gamma**d).float()[None, None]


def local_patch(x: torch.Tensor, bboxes: torch.Tensor | list) -> torch.Tensor:
    """Crop each sample's box (one shared box, or one per sample) out of `x` (B, C, H, W).

    `bboxes`: (1 or B, 4) as a tensor or as lists of ints (what the training pipeline uses: no tensor read).
    """
    boxes = bboxes.tolist() if isinstance(bboxes, torch.Tensor) else bboxes
    if len(boxes) == 1:
        t, l, h, w = boxes[0]
        return x[:, :, t : t + h, l : l + w]
    return torch.stack([x[i, :, t : t + h, l : l + w] for i, (t, l, h, w) in enumerate(boxes)])
