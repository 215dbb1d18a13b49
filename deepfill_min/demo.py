"""``deepfill-min attention-demo``: contextual attention alone, at pixel level, filling a hole in built-in images.

As the official ``test_contextual_attention`` does, the layer runs on the RGB pixels themselves (no network): the
background b is the image with the hole zeroed, every 3×3 patch of the half-resolution foreground f is matched against
every valid background patch, and the hole is pasted from 4×4 raw patches of b. Two columns show what that does:

* **one official pass** (f = b, masked keys logit 0, λ = 10): a query deep inside the hole has all-zero features, so
  its scores are all 0 and its weights uniform (1/L on every key, masked ones included, which then get weight 0).
  The interior becomes the average valid patch scaled by the fraction of valid keys, i.e. an average colour faded
  toward mid-grey (0 in [-1, 1]) and repeating with period `rate` = 2; structure comes in only at the hole's border.
  In the network the coarse stage provides the features instead;
* **a few passes from a diffused fill** (an illustration, not the official algorithm): the hole starts as a smooth
  diffusion of its border, and each composite is fed back as f with exact renormalisation and a sharper softmax,
  so the interior queries have features to match and patches are copied in.

The last column colour-codes the offsets of the last pass (§4.7): the hue is the direction of the source patch, the
saturation its distance (white: the patch matched itself).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .attention import contextual_attention
from .builtin import BUILTIN_IMAGES, builtin_image, centre_square
from .data import to_tensor
from .holdout import flow_images, save_grid, to_images
from .images import open_rgb

__all__ = ["BUILTIN_IMAGES", "attention_demo", "demo_image", "diffuse", "fill_hole"]


def demo_image(image: str, size: int) -> torch.Tensor:
    """A built-in image by name (see `BUILTIN_IMAGES`) or an image file, square-cropped and resized: (1, 3, S, S)."""
    if size < 16 or size % 8:
        raise ValueError(f"size must be a multiple of 8 of at least 16, got {size}")
    if image in BUILTIN_IMAGES:
        return to_tensor(builtin_image(image, size))[None]
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"--image {image} is neither a built-in image {sorted(BUILTIN_IMAGES)} nor a file")
    return to_tensor(np.asarray(centre_square(open_rgb(path, "--image"), size)))[None]


def diffuse(x: torch.Tensor, mask: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """Fill the hole by repeated 3×3 averaging with the known pixels held fixed (a discrete harmonic fill)."""
    kernel = torch.full((x.shape[1], 1, 3, 3), 1 / 9)
    y = x * (1 - mask)
    for _ in range(iterations):
        y = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1]) * mask + x * (1 - mask)
    return y


def fill_hole(x: torch.Tensor, mask: torch.Tensor, passes: int, softmax_scale: float, official: bool):
    """Fill `mask`'s hole in `x` by `passes` of pixel-level attention; returns (composite, offsets of the last pass).

    `official`: f starts as b (hole zeroed) with the official masking; else f starts from `diffuse` and the softmax
    is renormalised over valid keys.
    """
    if passes < 1:
        raise ValueError(f"passes must be at least 1, got {passes}")
    b = x * (1 - mask)
    composite, offsets = (b if official else diffuse(x, mask)), None
    for _ in range(passes):
        y, offsets = contextual_attention(composite, b, mask, softmax_scale=softmax_scale, return_offsets=True,
                                          mask_softmax="official" if official else "exact")  # fmt: skip
        composite = y * mask + x * (1 - mask)
    return composite, offsets


def attention_demo(images: str | tuple[str, ...] = ("bricks", "hopper", "stripes"), size: int = 128,
                   hole: tuple[int, int, int, int] | None = None, passes: int = 3, softmax_scale: float = 30.0,
                   out: str | Path = "runs/attention-demo.png") -> Path:  # fmt: skip
    """Cut a hole (default: a centred box of 3/8 of the side) in each image, fill it both ways, save the figure.

    `images` are built-in names (`BUILTIN_IMAGES`) or image files (one name or path alone is one row); `hole` is
    (top, left, height, width); `passes` and `softmax_scale` are those of the diffused-fill column (the official
    column is always one pass at λ = 10).
    """
    images = (images,) if isinstance(images, str) else tuple(images)
    t, l, h, w = hole or (5 * size // 16, 5 * size // 16, 3 * size // 8, 3 * size // 8)
    if min(h, w) < 1 or t < 0 or l < 0 or t + h > size or l + w > size:
        raise ValueError(f"hole (top, left, height, width) = {(t, l, h, w)} must lie inside the {size}x{size} image")
    mask = torch.zeros(1, 1, size, size)
    mask[..., t : t + h, l : l + w] = 1
    diffused = f"{passes} pass{'es' * (passes > 1)} from a diffused fill"
    columns: dict[str, list] = {"input with the hole": [], "one official pass": [], diffused: [], "attention flow": []}
    with torch.no_grad():
        for name in images:
            x = demo_image(name, size)
            official, _ = fill_hole(x, mask, 1, 10.0, official=True)
            filled, offsets = fill_hole(x, mask, passes, softmax_scale, official=False)
            pictures = (to_images(x * (1 - mask) + mask), to_images(official), to_images(filled),
                        flow_images(offsets, (size, size)))  # fmt: skip
            for column, picture in zip(columns.values(), pictures, strict=True):
                column.append(picture[0])
    return save_grid(out, {k: np.stack(v) for k, v in columns.items()})
