"""Inpainting with a trained generator: any image size, masks in any common form, and the official pipeline.

The default pipeline is the friendly one: the image (RGB uint8, any size) and its mask are reflect-padded on the
bottom and right to a multiple of 8 (so a hole at the edge stays a hole in the padding), inpainted, and cropped back,
so the user's image is never cut; the result is rounded to uint8.
``official=True`` reproduces the official ``test.py`` byte for byte instead (spec §10): crop to a multiple of 8 from
the top-left corner, BGR channel order, ``x / 127.5 - 1``, composite in float32, and a truncating uint8 cast (known
pixels with values 1-63 come back one lower, as in the official outputs).

Only the hole is computed (`deepfill_min.holeonly`: exact, the same composite to float rounding, far less work when
the hole is small); ``full=True`` runs the generator on every pixel, and so does asking for the flow picture.

Masks are (H, W) bool arrays, True in the hole (`deepfill_min.images.read_mask` reads them from files: white, any
channel, or the alpha channel). An empty mask returns the image unchanged, with a warning; a mask covering everything
is an error (there is no context to copy from). Files, folders and the CLI's checks are `deepfill_min.pairs`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .generator import Generator, GeneratorOutput
from .holdout import flow_images
from .holeonly import hole_only_forward


@dataclass
class InpaintResult:
    image: np.ndarray  # (H, W, 3) uint8 RGB: the composite
    coarse: np.ndarray  # (H, W, 3) uint8 RGB: stage 1 in the hole, the image around it (full: stage 1 everywhere)
    flow: np.ndarray | None  # (H, W, 3) uint8: the attention offsets, colour-coded, when asked


def _to_uint8(x: torch.Tensor, truncate: bool) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8; truncating like ``tf.saturate_cast`` or rounding."""
    v = ((x[0].permute(1, 2, 0).float().cpu().numpy() + 1) * np.float32(127.5)).clip(0, 255)
    return (v if truncate else np.rint(v)).astype(np.uint8)


def model_input(image: np.ndarray, mask: np.ndarray, device: torch.device | str = "cpu",
                color_order: str = "rgb") -> tuple[torch.Tensor, ...]:  # fmt: skip
    """`image` ((H, W, 3) uint8 RGB) and `mask` ((H, W) bool) as the model reads them: x (1, 3, H, W) in [-1, 1] in
    its colour order and m (1, 1, H, W), then both padded on the bottom and right to multiples of 8 (reflected, or
    replicated when a side is too short to reflect): ``(x, m, x_padded, m_padded)``."""
    H, W = mask.shape
    x = torch.from_numpy(image.astype(np.float32) / np.float32(127.5) - 1).permute(2, 0, 1)[None].to(device)
    m = torch.from_numpy(mask.astype(np.float32))[None, None].to(device)
    if color_order == "bgr":
        x = x.flip(1)
    pad_h, pad_w = -H % 8, -W % 8
    mode = "reflect" if pad_h < H and pad_w < W else "replicate"
    # the mask is padded like the image, so a hole at the bottom or right edge stays a hole in the padding: the
    # padding never shows the model a reflection of the pixels under the hole
    return x, m, F.pad(x, (0, pad_w, 0, pad_h), mode=mode), F.pad(m, (0, pad_w, 0, pad_h), mode=mode)


@torch.no_grad()
def inpaint(image: np.ndarray, mask: np.ndarray, generator: Generator, color_order: str = "rgb",
            official: bool = False, return_flow: bool = False, full: bool = False) -> InpaintResult:  # fmt: skip
    """Fill the holes of `image` ((H, W, 3) uint8 RGB) where `mask` ((H, W) bool) is True.

    Hole-only unless `full` or `return_flow` (the module docstring says what changes).
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {getattr(image, 'shape', type(image))}")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}")
    if not mask.any():  # nothing to fill: the coarse stage is the image and the flow is white (no offsets)
        warnings.warn("the mask is empty: the image is returned unchanged", stacklevel=2)
        return InpaintResult(image.copy(), image.copy(), np.full_like(image, 255) if return_flow else None)
    if mask.all():
        raise ValueError("the mask covers the whole image: there is no context to inpaint from")
    H, W = mask.shape
    if official:  # §10: top-left crop to a multiple of 8
        H, W = H // 8 * 8, W // 8 * 8
        if H == 0 or W == 0:
            raise ValueError("official=True needs an image of at least 8x8 pixels")
        image, mask = image[:H, :W], mask[:H, :W]
        color_order = "bgr"
    x, m, xp, mp = model_input(image, mask, next(generator.parameters()).device, color_order)
    xin = xp * (1 - mp)
    if full or return_flow:
        out = generator(xin, mp, return_offsets=return_flow)
    else:
        out = hole_only_forward(generator, xin, mp)
    flow = flow_picture(out.offsets, tuple(xp.shape[-2:]), (H, W)) if return_flow else None
    return InpaintResult(*composite_images(x, m, out, color_order, truncate=official), flow)


def flow_picture(offsets: torch.Tensor, padded: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The first image's offsets colour-coded at the padded input's size `padded`, cropped to `size`: (H, W, 3)
    uint8."""
    rgb = flow_images(offsets, padded)[0, : size[0], : size[1]]
    return (rgb * 255).round().astype(np.uint8)


def composite_images(x: torch.Tensor, m: torch.Tensor, out: GeneratorOutput, color_order: str = "rgb",
                     truncate: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The composite $x_2 m + x (1 - m)$ and the coarse stage of a generator's output on the padded input, cropped to
    the size of `x` and `m` (`model_input`'s first two), as (H, W, 3) uint8 RGB."""
    H, W = m.shape[-2:]
    x2, x1 = out.x_stage2[..., :H, :W], out.x_stage1[..., :H, :W]
    composite = x2 * m + x * (1 - m)
    if color_order == "bgr":
        composite, x1 = composite.flip(1), x1.flip(1)
    return _to_uint8(composite, truncate), _to_uint8(x1, truncate)
