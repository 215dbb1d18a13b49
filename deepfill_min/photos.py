"""Real photos that ship inside installed packages, split into training and held-out photos: nothing is downloaded.

The held-out photos are never cropped for training, so a held-out figure measures images the model has not seen:

* **held out**: Grace Hopper (inside matplotlib's wheel, always present) and, with the ``photos`` extra, the cat
  ``chelsea`` of scikit-image;
* **training** (the ``photos`` extra, ``pip install deepfill-min[photos]``, part of ``dev``): scikit-image's other
  sample photos: people, objects, a motorcycle workshop, a rocket, a microscope slide, space, coins, the moon, and three
  real textures (brick, grass, gravel). Grayscale ones are used as gray RGB.

Without the extra, the training split has no photos: `deepfill_min.data.BuiltinImages` then draws its photo family
from the other families and says so once. The files are read from the package's data folder without importing
scikit-image; they are decoded by `deepfill_min.images.open_image` like any file.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from .images import open_image

HOLDOUT_PHOTOS: tuple[str, ...] = ("hopper", "chelsea")
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "coffee", "rocket", "motorcycle_left", "motorcycle_right", "ihc", "hubble_deep_field", "camera",
    "coins", "moon", "brick", "grass", "gravel",
)  # fmt: skip
_SUFFIX = {"rocket": ".jpg", "hubble_deep_field": ".jpg"}


@functools.cache
def _skimage_data() -> Path | None:
    """scikit-image's folder of sample images, or None when the package is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


def photo_path(name: str) -> Path | None:
    """The file of photo `name`, or None when the package that ships it is not installed."""
    if name == "hopper":
        from matplotlib import cbook  # noqa: PLC0415  (not at import: the inpaint command needs no photo)

        return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    folder = _skimage_data()
    path = None if folder is None else folder / (name + _SUFFIX.get(name, ".png"))
    return path if path is not None and path.is_file() else None


def available_photos(split: str) -> tuple[str, ...]:
    """The photos of `split` (``"train"`` or ``"test"``) that are installed here."""
    names = TRAIN_PHOTOS if split == "train" else HOLDOUT_PHOTOS
    return tuple(n for n in names if photo_path(n) is not None)


@functools.cache
def photo(name: str) -> np.ndarray:
    """Photo `name` as HxWx3 RGB floats in [0, 1] (gray photos repeated on three channels)."""
    path = photo_path(name)
    if path is None:
        raise ValueError(f"photo {name!r} is not installed here (pip install deepfill-min[photos])")
    return np.asarray(open_image(path).rgb, np.float32) / 255
