"""Inpainting with a trained generator: any image size, masks in any common form, and the official pipeline.

The default pipeline is the friendly one: the image (RGB uint8, any size) is reflect-padded on the bottom and right
to a multiple of 8, inpainted, and cropped back, so the user's image is never cut; the result is rounded to uint8.
``official=True`` reproduces the official ``test.py`` byte for byte instead (spec §10): crop to a multiple of 8 from
the top-left corner, BGR channel order, ``x / 127.5 - 1``, composite in float32, and a truncating uint8 cast (known
pixels with values 1-63 come back one lower, as in the official outputs).

Masks: white (above `threshold`) is the hole. A grayscale image, any channel of an RGB image, or the alpha channel
are accepted (``channel="auto"`` uses the alpha channel when the image has a non-trivial one, else the brightest
channel of each pixel). An empty mask returns the image unchanged, with a warning; a mask covering everything is an
error (there is no context to copy from).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import load_checkpoint
from .generator import Generator
from .holdout import flow_images


@dataclass
class InpaintResult:
    image: np.ndarray  # (H, W, 3) uint8 RGB: the composite
    coarse: np.ndarray  # (H, W, 3) uint8 RGB: stage 1's raw output
    flow: np.ndarray | None  # (H, W, 3) uint8: the attention offsets, colour-coded, when asked


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, str]:
    """The generator of a deepfill-min checkpoint (file or run directory) and the colour order it was trained in."""
    state = load_checkpoint(path, device)
    cfg = state["config"]
    G = Generator(cfg.get("cnum", 32), attention=cfg.get("attention", True)).to(device)
    try:
        G.load_state_dict(state["generator"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not hold a compatible generator: {err}") from None
    return G.eval(), cfg.get("color_order", "rgb")


def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def read_mask(path: str | Path, threshold: float = 127.5, channel: str | int = "auto") -> np.ndarray:
    """(H, W) bool hole mask from a grayscale, RGB or alpha-channel image file; values above `threshold` are holes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask {path} does not exist")
    with Image.open(path) as img:
        has_alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
        rgba = np.array(img.convert("RGBA"), dtype=np.float32)
    if channel == "alpha" or (channel == "auto" and has_alpha and (rgba[..., 3] < 255).any()):
        values = rgba[..., 3]
    elif channel == "auto":
        values = rgba[..., :3].max(-1)
    elif channel in (0, 1, 2):
        values = rgba[..., channel]
    else:
        raise ValueError(f"mask channel must be 'auto', 'alpha', 0, 1 or 2, got {channel!r}")
    return values > threshold


def _to_uint8(x: torch.Tensor, truncate: bool) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8; truncating like ``tf.saturate_cast`` or rounding."""
    v = ((x[0].permute(1, 2, 0).float().cpu().numpy() + 1) * np.float32(127.5)).clip(0, 255)
    return (v if truncate else np.rint(v)).astype(np.uint8)


@torch.no_grad()
def inpaint(image: np.ndarray, mask: np.ndarray, generator: Generator, color_order: str = "rgb",
            official: bool = False, return_flow: bool = False) -> InpaintResult:  # fmt: skip
    """Fill the holes of `image` ((H, W, 3) uint8 RGB) where `mask` ((H, W) bool) is True."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {getattr(image, 'shape', type(image))}")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}")
    if not mask.any():
        warnings.warn("the mask is empty: the image is returned unchanged", stacklevel=2)
        return InpaintResult(image.copy(), image.copy(), None)
    if mask.all():
        raise ValueError("the mask covers the whole image: there is no context to inpaint from")
    H, W = mask.shape
    if official:  # §10: top-left crop to a multiple of 8
        H, W = H // 8 * 8, W // 8 * 8
        if H == 0 or W == 0:
            raise ValueError("official=True needs an image of at least 8x8 pixels")
        image, mask = image[:H, :W], mask[:H, :W]
        color_order = "bgr"
    device = next(generator.parameters()).device
    x = torch.from_numpy(image.astype(np.float32) / np.float32(127.5) - 1).permute(2, 0, 1)[None].to(device)
    m = torch.from_numpy(mask.astype(np.float32))[None, None].to(device)
    if color_order == "bgr":
        x = x.flip(1)
    pad_h, pad_w = -H % 8, -W % 8
    mode = "reflect" if pad_h < H and pad_w < W else "replicate"
    xp, mp = F.pad(x, (0, pad_w, 0, pad_h), mode=mode), F.pad(m, (0, pad_w, 0, pad_h))
    xin = xp * (1 - mp)
    out = generator(xin, mp, return_offsets=return_flow)
    x2, x1 = out.x_stage2[..., :H, :W], out.x_stage1[..., :H, :W]
    composite = x2 * m + x * (1 - m)
    if color_order == "bgr":
        composite, x1 = composite.flip(1), x1.flip(1)
    flow = None
    if return_flow:
        rgb = flow_images(out.offsets, tuple(xp.shape[-2:]))[0, :H, :W]
        flow = (rgb * 255).round().astype(np.uint8)
    return InpaintResult(_to_uint8(composite, truncate=official), _to_uint8(x1, truncate=official), flow)
