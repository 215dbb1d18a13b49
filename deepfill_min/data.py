r"""Training and evaluation images: a folder or an official ``.flist``, and a built-in set that needs no download.

**Folders and file lists** (spec §9). `ImageFiles` reads every jpg/png/webp/bmp under a folder (recursively), or the
paths of a ``.flist`` file (one path a line, the official format; relative paths are taken from the list's folder).
Images are RGB internally; ``color_order="bgr"`` flips them for the official weights, which were trained on
``cv2.imread``'s BGR. Like the official loader, ``random_crop=False`` resizes to the training size (bilinear) and
``random_crop=True`` upscales an image whose short side is too small, then crops at random. Files are decoded by
`deepfill_min.images.open_image` (EXIF orientation applied, 16-bit, palette, CMYK... handled); a file that cannot
be read is skipped with a warning naming it and counted (`skipped`); an empty folder or list is an error. Hidden
files (``.DS_Store``, macOS's ``._photo.jpg``) are not listed.

**Built-in images.** `BuiltinImages` draws seeded, deterministic pictures where copying from the context matters,
five families in turn: stripes, tiles, dot lattices, a simple landscape, and crops of real photos at random places and
scales. The ``train`` and ``test`` splits are disjoint: the textures come from disjoint seeds (so every stripe
angle and period, tile and dot size, colour of the test split is new), and the photos from disjoint photos
(`deepfill_min.photos`: the test split crops Grace Hopper and scikit-image's cat, the training split the other
scikit-image photos of the ``photos`` extra).

Both give pixels as 8-bit arrays (`load_uint8`, what the training pipeline ships to the device) or as float tensors
(3, H, W) in [-1, 1] (`load`, ``x / 127.5 - 1``). The built-in pictures are quantised to 8 bits like any file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import open_rgb
from .photos import available_photos, photo

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
COLOR_ORDERS = ("rgb", "bgr")
TEST_SEED_OFFSET = 1_000_000
FAMILIES = ("stripes", "bricks", "dots", "landscape", "photo")  # procedural_image's families, by seed % 5
TRAIN_LENGTH = 100_000  # seeds 0 … 99 999; the test split's start at TEST_SEED_OFFSET


def in_color_order(rgb: np.ndarray, color_order: str) -> np.ndarray:
    """HxWx3 RGB as it is for ``"rgb"``, with its channels reversed (contiguous) for ``"bgr"``."""
    return np.ascontiguousarray(rgb[..., ::-1]) if color_order == "bgr" else rgb


def to_tensor(rgb: np.ndarray, color_order: str = "rgb") -> torch.Tensor:
    """HxWx3 uint8 (or float in [0, 1]) -> (3, H, W) float in [-1, 1], channels flipped for ``"bgr"``."""
    x = torch.from_numpy(np.array(in_color_order(rgb, color_order))).permute(2, 0, 1).float()  # a writable copy
    return x / 127.5 - 1 if rgb.dtype == np.uint8 else x * 2 - 1


class ImageSource(torch.utils.data.Dataset):
    """What both sources share: `load_uint8` gives (H, W, 3) uint8; `load` and indexing give float tensors."""

    def load_uint8(self, index: int, generator: torch.Generator | None = None) -> np.ndarray:
        raise NotImplementedError

    def load(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`load_uint8` as a (3, H, W) float tensor in [-1, 1]."""
        return to_tensor(self.load_uint8(index, generator))

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.load(index)


def is_image_name(path: Path) -> bool:
    """An image suffix, and not a hidden file (``.DS_Store``, macOS's ``._photo.jpg``)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(source: str | Path) -> list[Path]:
    """The image files of a folder (recursive, sorted) or of a ``.flist`` file."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"data source {source} does not exist (expected a folder of images or a .flist file)")
    if source.is_file():
        try:
            lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise ValueError(f"file list {source} is not UTF-8 text (expected one image path a line)") from None
        files = [p if p.is_absolute() else source.parent / p for p in map(Path, lines)]
    else:
        files = sorted(p for p in source.rglob("*") if is_image_name(p) and p.is_file())
    if not files:
        raise ValueError(f"data source {source} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def fit(img: Image.Image, size: tuple[int, int], random_crop: bool, generator: torch.Generator | None) -> Image.Image:
    """Resize to `size` (h, w), or upscale so that it covers `size` and crop at random (§9)."""
    h, w = size
    if not random_crop:
        return img.resize((w, h), Image.BILINEAR)
    scale = max(h / img.height, w / img.width)
    if scale > 1:  # smaller images are upscaled (ceil); larger ones are not downscaled
        img = img.resize((int(np.ceil(img.width * scale)), int(np.ceil(img.height * scale))), Image.BILINEAR)
    top = int(torch.randint(0, img.height - h + 1, (), generator=generator))
    left = int(torch.randint(0, img.width - w + 1, (), generator=generator))
    return img.crop((left, top, left + w, top + h))


class ImageFiles(ImageSource):
    """Images from a folder or a ``.flist``; `load(i, generator)` makes the random crop reproducible."""

    def __init__(self, source: str | Path, image_size: tuple[int, int] = (256, 256), random_crop: bool = False,
                 color_order: str = "rgb") -> None:  # fmt: skip
        if color_order not in COLOR_ORDERS:
            raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
        self.files = list_images(source)
        self.image_size, self.random_crop, self.color_order = tuple(image_size), random_crop, color_order
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files)

    def load_uint8(self, index: int, generator: torch.Generator | None = None) -> np.ndarray:
        """Image `index` (H, W, 3) uint8 in the colour order, or the next readable one after it (see the docstring)."""
        # a JPEG that is resized anyway is decoded at the smallest DCT scale that still covers the target (draft mode)
        draft = None if self.random_crop else (self.image_size[1], self.image_size[0])
        for k in range(len(self.files)):
            path = self.files[(index + k) % len(self.files)]
            try:
                rgb = open_rgb(path, draft=draft)
            except (OSError, ValueError) as err:
                if path not in self.skipped:
                    self.skipped.add(path)
                    warnings.warn(f"skipping unreadable image: {err}", stacklevel=2)
                continue
            return in_color_order(np.asarray(fit(rgb, self.image_size, self.random_crop, generator)), self.color_order)
        raise ValueError(f"none of the {len(self.files)} images could be read (the first: {self.files[0]})")


def builtin_photo() -> np.ndarray:
    """The photo that ships inside matplotlib (Grace Hopper), RGB floats in [0, 1]; no download. It is held out."""
    return photo("hopper")


def family_index(seed: int, photos: tuple[str, ...]) -> int:
    """The family (index into `FAMILIES`) of `procedural_image`'s `seed`: ``seed % 5``, and for the photo family
    without photos the texture family ``seed // 5 % 4``."""
    kind = seed % 5
    return seed // 5 % 4 if kind == 4 and not photos else kind


def procedural_image(seed: int, size: int = 64, photos: tuple[str, ...] = ("hopper",)) -> np.ndarray:
    """A deterministic HxWx3 float image in [0, 1]: stripes, tiles, dots, landscape or a crop of one of `photos`.

    The family is ``seed % 5``; the photo family (4) crops one of `photos` (`deepfill_min.photos`) at a random
    place and scale, or is the family ``seed // 5 % 4`` when `photos` is empty.
    """
    kind = family_index(seed, photos)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c1, c2, c3 = rng.uniform(0.05, 0.95, size=(3, 3)).astype(np.float32)
    if kind == 0:  # stripes at a random angle and period
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.08, 0.3)
        t = (x * np.cos(angle) + y * np.sin(angle)) / period
        w = (np.sin(2 * np.pi * t) > rng.uniform(-0.5, 0.5)).astype(np.float32)[..., None]
        return w * c1 + (1 - w) * c2
    if kind == 1:  # tiles (bricks) with mortar lines and a per-tile shade
        th, tw = rng.uniform(0.08, 0.2), rng.uniform(0.12, 0.3)
        row = np.floor(y / th)
        xs = x / tw + 0.5 * (row % 2)
        shade = 0.85 + 0.3 * ((np.floor(xs) * 7 + row * 13) % 5 / 5)
        mortar = ((y / th % 1) < 0.12) | ((xs % 1) < 0.08)
        return np.where(mortar[..., None], c2, np.clip(c1 * shade[..., None], 0, 1))
    if kind == 2:  # a lattice of dots
        period, radius = rng.uniform(0.1, 0.25), rng.uniform(0.2, 0.45)
        dy, dx = (y / period) % 1 - 0.5, (x / period) % 1 - 0.5
        return np.where(((dy**2 + dx**2) < radius**2)[..., None], c1, c2)
    if kind == 3:  # landscape: sky gradient, ground, a row of trees
        horizon = rng.uniform(0.4, 0.7)
        sky = c3 * (0.6 + 0.4 * y[..., None])
        img = np.where((y > horizon)[..., None], c2, sky)
        spacing = rng.uniform(0.12, 0.25)
        u = (x / spacing) % 1 - 0.5
        tree = (y < horizon) & (y > horizon - 0.25 * (1 - 2 * np.abs(u)))
        return np.where(tree[..., None], c1, img)
    source = photo(photos[int(rng.integers(len(photos)))])  # kind 4: a crop of a photo, resized
    short = min(source.shape[:2])
    side = int(rng.integers(min(size, short), short + 1))
    top, left = (int(rng.integers(0, n - side + 1)) for n in source.shape[:2])
    crop = Image.fromarray((source[top : top + side, left : left + side] * 255).astype(np.uint8))
    return np.asarray(crop.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255


class BuiltinImages(ImageSource):
    """`length` procedural images of `size`×`size`; ``split="test"`` uses seeds disjoint from ``"train"``."""

    def __init__(self, split: str = "train", size: int = 64, length: int | None = None,
                 color_order: str = "rgb") -> None:  # fmt: skip
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if size < 8 or size % 8:
            raise ValueError(f"size must be a positive multiple of 8, got {size!r}")
        if color_order not in COLOR_ORDERS:
            raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
        self.split, self.size, self.color_order = split, size, color_order
        self.length = length if length is not None else (TRAIN_LENGTH if split == "train" else 100)
        self.offset = 0 if split == "train" else TEST_SEED_OFFSET
        self.photos = available_photos(split)
        if not self.photos:
            warnings.warn("the photos extra is not installed: the built-in training images have no photo family "
                          "(pip install deepfill-min[photos])", stacklevel=2)  # fmt: skip

    def __len__(self) -> int:
        return self.length

    def family(self, index: int) -> str:
        """The family of image `index` (one of `FAMILIES`)."""
        return FAMILIES[family_index(self.offset + index, self.photos)]

    def load_uint8(self, index: int, generator: torch.Generator | None = None) -> np.ndarray:
        """Image `index` as an 8-bit picture (H, W, 3) uint8 in the colour order, like a file would give it."""
        image = procedural_image(self.offset + index, self.size, self.photos)
        return in_color_order(np.rint(image * 255).astype(np.uint8), self.color_order)

