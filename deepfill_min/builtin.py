"""Built-in images by name, for demos and tests: nothing is ever downloaded.

``"hopper"`` is the real photo that ships inside matplotlib's wheel (Grace Hopper), centre-cropped to a square; it
belongs to the held-out split (`deepfill_min.photos`), so the shipped model has never seen it.
The other names are seeded, deterministic pictures from `deepfill_min.data.procedural_image` (the generator behind
the built-in images; their seeds 0-3 are training seeds), chosen because copying patches from the context visibly
matters for them: repeated structure (``"bricks"``, ``"stripes"``, ``"dots"``) or a scene with a horizon
(``"landscape"``).

`builtin_image` returns float32 HxWx3 RGB in [0, 1], the same for the same arguments on every machine.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .data import builtin_photo, procedural_image

# name -> seed of `procedural_image` (its family is seed % 5), or None for the photo
_SEEDS = {"hopper": None, "bricks": 1, "stripes": 0, "dots": 2, "landscape": 3}
BUILTIN_IMAGES: tuple[str, ...] = tuple(_SEEDS)


def check_size(size: int) -> int:
    """`size` if it is a positive multiple of 8 (the generator's total stride), else a ValueError."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8 or size % 8:
        raise ValueError(f"size must be a positive multiple of 8, got {size!r}")
    return int(size)


def centre_square(rgb: Image.Image, size: int) -> Image.Image:
    """The largest centred square of `rgb`, resized (bilinear) to `size`×`size`."""
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    return rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)


def builtin_image(name: str = "hopper", size: int = 256) -> np.ndarray:
    """The built-in image `name` (one of `BUILTIN_IMAGES`) as a float32 `size`×`size`×3 RGB array in [0, 1]."""
    if name not in _SEEDS:
        raise ValueError(f"name must be one of {', '.join(BUILTIN_IMAGES)}, got {name!r}")
    size = check_size(size)
    seed = _SEEDS[name]
    if seed is not None:
        return procedural_image(seed, size).astype(np.float32)
    photo = Image.fromarray(np.round(builtin_photo() * 255).astype(np.uint8))
    return np.asarray(centre_square(photo, size), dtype=np.float32) / 255
