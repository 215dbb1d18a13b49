"""Reading images and masks from files the way a viewer shows them, with one clear error for a file that won't do.

Every image and mask the package reads (the CLI, `read_image`, `read_mask`, the training and evaluation folders, the
attention demo) goes through `open_image`:

* **Orientation.** A phone stores a portrait photo sideways and records the rotation in its EXIF ``Orientation``
  tag; every viewer applies it. ``ImageOps.exif_transpose`` applies it here too, so the pixels (and the size) are the
  ones the user sees and draws a mask on.
* **Modes.** 8-bit colour and grayscale, palette (with or without transparency), RGBA, LA, CMYK, YCbCr, HSV and
  1-bit images are converted by Pillow. 16-bit grayscale (``I;16``, and ``I``, taken as 16-bit) is scaled to 8 bits
  by $v / 257$ and rounded (Pillow's own conversion clips at 255, which turns most 16-bit photos white); 16-bit
  colour PNGs are read as 8-bit by Pillow itself. Float (``F``), CIELAB and premultiplied ``La`` images are refused:
  there is no single right way to map them to 8-bit sRGB.
* **Errors.** A missing path is a ``FileNotFoundError``; a folder, an empty file, a file that is not an image, a
  truncated or corrupt one, one above Pillow's decompression-bomb limit, or an unsupported mode is a ``ValueError``
  whose one-line message names the file. The whole file is decoded inside the ``with`` (Pillow is lazy), so a
  truncated file fails here and not later.

The first frame of an animation or multi-page file is used. Colour profiles (ICC) are not applied.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
REFUSED_MODES = {"F": "32-bit float", "LAB": "CIELAB", "La": "premultiplied grayscale + alpha"}
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
ORIENTATION = 0x0112  # the EXIF tag
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "PPM", "ICO")  # what bytes (an upload) may be


@dataclass
class Decoded:
    rgb: np.ndarray  # (H, W, 3) uint8, as displayed
    alpha: np.ndarray | None  # (H, W) uint8 when the file has transparency, else None


def one_line(err: BaseException) -> str:
    """The first line of an exception's message (the type's name when it has none)."""
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__


def check_file(path: str | Path, what: str) -> Path:
    """`path` as a Path if it is an existing regular file; else a one-line error naming `what` it should be."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder, expected a file")
    if not path.is_file():
        raise ValueError(f"{what} {path} is not a regular file")
    return path


def _to_8bit(img: Image.Image) -> Image.Image:
    """An image that Pillow converts to RGB(A) faithfully: 16-bit grayscale scaled to 8 bits, the rest as it is."""
    if img.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(img.convert("I"), dtype=np.float64).clip(0, 65535)
        return Image.fromarray(np.rint(values / 257).astype(np.uint8), "L")
    return img


def open_image(path: str | Path | bytes, what: str = "image", draft: tuple[int, int] | None = None) -> Decoded:
    """Decode `path` fully, as displayed (EXIF orientation applied), to 8-bit RGB plus its alpha channel if any.

    `path` may also be the bytes of a file (an upload); the messages then name `what` alone.
    `draft` (width, height, as displayed): a JPEG is decoded at the smallest of its DCT scales (1/2, 1/4, 1/8) that
    still covers that size, several times faster for a large photo that is resized to a small one anyway.
    """
    formats = None
    if isinstance(path, bytes):  # an upload: the common raster formats only (no EPS, which Pillow hands to Ghostscript)
        name, source, formats = what, io.BytesIO(path), UPLOAD_FORMATS
        size = len(path)
    else:
        source = path = check_file(path, what)
        name, size = f"{what} {path}", path.stat().st_size
    if size == 0:
        raise ValueError(f"{name} is empty (0 bytes)")
    rgba = None
    try:
        with Image.open(source, formats=formats) as img:
            if draft is not None and img.format == "JPEG":
                sideways = img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
                img.draft("RGB", draft[::-1] if sideways else draft)
            img = ImageOps.exif_transpose(img)
            mode, has_alpha = img.mode, img.mode in ALPHA_MODES or "transparency" in img.info
            if mode not in REFUSED_MODES:
                img = _to_8bit(img)
                rgba = np.asarray(img.convert("RGBA") if has_alpha else img.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{name} is not an image that Pillow can read (unknown format or corrupt)") from None
    except PermissionError:
        raise ValueError(f"{name} cannot be read: permission denied") from None
    except Image.DecompressionBombError as err:
        raise ValueError(f"{name} is too large to decode safely: {one_line(err)}") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, struct.error) as err:
        raise ValueError(f"{name} is truncated or corrupt: {one_line(err)}") from None  # Pillow's decoders
    if rgba is None:
        raise ValueError(f"{name} is a {REFUSED_MODES[mode]} image (mode {mode}), which is not supported: "
                         "save it as 8- or 16-bit RGB or grayscale")  # fmt: skip
    if rgba.shape[2] == 4:
        return Decoded(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]))
    return Decoded(rgba, None)


def open_rgb(path: str | Path, what: str = "image", draft: tuple[int, int] | None = None) -> Image.Image:
    """`open_image` as a PIL RGB image (for resizing and cropping)."""
    return Image.fromarray(open_image(path, what, draft).rgb, "RGB")


def read_image(path: str | Path, what: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB, as a viewer shows the file (see the module docstring)."""
    return open_image(path, what).rgb


def read_mask(path: str | Path, threshold: float = 127.5, channel: str | int = "auto",
              what: str = "mask") -> np.ndarray:  # fmt: skip
    """(H, W) bool hole mask from a grayscale, RGB or alpha-channel image file; values above `threshold` are holes.

    ``channel="auto"`` takes the alpha channel when the file has a non-trivial one, else the brightest of R, G, B at
    each pixel; ``"alpha"``, 0, 1 or 2 pick one channel (``"alpha"`` of a file without transparency is all 255).
    """
    if channel not in ("auto", "alpha", 0, 1, 2) or isinstance(channel, bool):
        raise ValueError(f"mask channel must be 'auto', 'alpha', 0, 1 or 2, got {channel!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 255:
        raise ValueError(f"mask threshold must be a number in [0, 255), got {threshold!r}")
    decoded = open_image(path, what)
    alpha = decoded.alpha if decoded.alpha is not None else np.full(decoded.rgb.shape[:2], 255, np.uint8)
    if channel == "alpha" or (channel == "auto" and (alpha < 255).any()):
        values = alpha
    elif channel == "auto":
        values = decoded.rgb.max(-1)
    else:
        values = decoded.rgb[..., channel]
    return values > threshold
