r"""What the app's server does, without HTTP: load an image, fill a drawn hole, answer clicks with attention sources.

`Explorer` holds one generator and the recent images and fills of every visitor, each under a random id, so that two
browser tabs (or two users) never see each other's results:

* `load` takes an upload (the bytes of any file `deepfill_min.images` reads, EXIF orientation applied) or a built-in
  image, and checks it against the size limit: a side above `max_side` pixels (2048 by default) is refused with
  the size it would have after a downscale, and the caller may ask for that downscale (Lanczos); a file above
  64 megapixels is refused outright (its header is read first, nothing is decoded).
* `fill` takes an image id and the drawn mask (any image file, white = hole, at the image's size): the composite
  and the coarse stage (hole-only inference, as `deepfill_min.inpaint` computes them), and the attention flow of the
  cells that hold a hole pixel (white elsewhere); the attention map (`holeonly.attention_map`) serves both, and is
  kept for the clicks.
* `sources` takes a fill id and a pixel: the k heaviest source patches of the query under it, with their weights,
  read from the layer's own weights (`sources.top_sources`), not recomputed by the page.

Bad input is a `ValueError` with a one-line message (the server turns it into a 400 the page shows): a file that is
not an image, an image too large or too small, a mask of the wrong size, an empty mask or one covering everything,
an unknown or expired id, a pixel outside the image. The most recent `keep` images and fills are kept (16 each),
and fewer fills when their attention maps pass 2 GiB (the two newest always stay).
"""

from __future__ import annotations

import base64
import functools
import io
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .builtin import BUILTIN_IMAGES, builtin_image
from .generator import Generator
from .holdout import flow_legend
from .holeonly import AttentionMap, attention_map, hole_only_forward
from .images import open_image, read_mask
from .inpaint import composite_images, flow_picture, model_input
from .sources import Sources, top_sources

MAX_SIDE = 2048  # pixels: the largest side `load` accepts without a downscale
MAX_PIXELS = 64_000_000  # the largest upload decoded at all, even to be downscaled (about 190 MB of RGB)
MIN_SIDE = 32  # pixels: the smallest side (the attention works on cells of 8x8 pixels)
FILL_BUDGET = 2 << 30  # bytes of attention maps kept for the clicks (beyond the two newest fills, older ones go)
BUILTIN_SIZE = 128  # the built-in images' side: the shipped model's training size (the page shows them enlarged)


def png_data_url(rgb: np.ndarray) -> str:
    """An (H, W, 3) or (H, W) uint8 array as a ``data:image/png;base64,...`` URL."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def data_url_bytes(url: object, what: str) -> bytes:
    """The bytes of a base64 ``data:`` URL, or a one-line error naming `what`."""
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url[:100]:
        raise ValueError(f"{what} must be a base64 data: URL of an image file")
    try:
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    except ValueError:
        raise ValueError(f"{what} is not valid base64") from None


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down to fit `max_side` pixels a side, keeping the aspect ratio."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image file's header alone, nothing decoded; None if Pillow cannot read it (the full
    decode then says why)."""
    try:
        return Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001
        return None


def _check_mask_size(size: tuple[int, int] | None, image: np.ndarray) -> None:
    if size is not None and tuple(size) != image.shape[1::-1]:
        raise ValueError(f"the mask is {size[0]}x{size[1]} but the image is {image.shape[1]}x{image.shape[0]}")


class TooLarge(ValueError):
    """An image above the size limit; `size` is (width, height) after the downscale the app offers."""

    def __init__(self, message: str, size: tuple[int, int]) -> None:
        super().__init__(message)
        self.size = size


@dataclass
class Fill:
    image: np.ndarray  # (H, W, 3) uint8 RGB, the input
    mask: np.ndarray  # (H, W) bool, True = hole
    result: np.ndarray  # the composite
    coarse: np.ndarray  # stage 1 in the hole, the image around it
    flow: np.ndarray | None  # the hole's attention flow, white elsewhere (None without attention)
    amap: AttentionMap | None  # what the clicks read (None without attention)
    seconds: float  # the fill's compute time


class Explorer:
    """The app's state: a generator, its colour order, and the recent images and fills by id."""

    def __init__(self, generator: Generator, color_order: str = "rgb", max_side: int = MAX_SIDE,
                 keep: int = 16) -> None:  # fmt: skip
        if max_side < MIN_SIDE:
            raise ValueError(f"max_side must be at least {MIN_SIDE} pixels, got {max_side}")
        self.generator, self.color_order, self.max_side, self.keep = generator, color_order, max_side, keep
        self.device = next(generator.parameters()).device
        self.images: OrderedDict[str, np.ndarray] = OrderedDict()
        self.fills: OrderedDict[str, Fill] = OrderedDict()
        self.lock = threading.Lock()  # one model computation at a time; the stores are touched under it too

    def _store(self, store: OrderedDict, value: object) -> str:
        key = secrets.token_urlsafe(12)
        store[key] = value
        while len(store) > self.keep or (store is self.fills and len(store) > 2 and _bytes(store) > FILL_BUDGET):
            store.popitem(last=False)
        return key

    def _get(self, store: OrderedDict, key: object, what: str):
        if not isinstance(key, str) or key not in store:
            raise ValueError(f"{what} {str(key)[:40]!r} is unknown or expired: load the image again")
        store.move_to_end(key)
        return store[key]

    def load(self, data: bytes | None = None, builtin: str | None = None,
             downscale: bool = False) -> tuple[str, np.ndarray]:  # fmt: skip
        """An uploaded file's bytes or a built-in image's name -> (image id, (H, W, 3) uint8 RGB)."""
        if builtin is not None:
            if builtin not in BUILTIN_IMAGES:
                raise ValueError(f"builtin must be one of {', '.join(BUILTIN_IMAGES)}, got {builtin!r}")
            rgb = np.rint(builtin_image(builtin, BUILTIN_SIZE) * 255).astype(np.uint8)
        else:
            if not data:
                raise ValueError("the uploaded file is empty: choose an image file")
            width, height = header_size(data) or (0, 0)  # refuse before decoding
            if width * height > MAX_PIXELS:
                raise ValueError(f"the image is {width}x{height} pixels, above the {MAX_PIXELS // 10**6} megapixels "
                                 "this app decodes: downscale it before uploading")  # fmt: skip
            if max(width, height) > self.max_side and not downscale:
                w, h = fitted_size(width, height, self.max_side)
                raise TooLarge(f"the image is {width}x{height} pixels, above the limit of {self.max_side} pixels a "
                               f"side: downscale it to {w}x{h}", (w, h))  # fmt: skip
            rgb = open_image(data, "the uploaded file").rgb
            if max(rgb.shape[:2]) > self.max_side:
                size = fitted_size(rgb.shape[1], rgb.shape[0], self.max_side)
                rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))
        if min(rgb.shape[:2]) < MIN_SIDE:
            raise ValueError(f"the image is {rgb.shape[1]}x{rgb.shape[0]} pixels: at least {MIN_SIDE} a side needed")
        with self.lock:
            return self._store(self.images, rgb), rgb

    def fill(self, image_id: str, mask_file: bytes) -> tuple[str, Fill]:
        """Fill the hole drawn in `mask_file` (an image file at the image's size, white = hole) -> (fill id, Fill)."""
        with self.lock:
            image = self._get(self.images, image_id, "image")
        _check_mask_size(header_size(mask_file), image)  # before decoding
        mask = read_mask(mask_file, what="the mask")
        _check_mask_size(mask.shape[::-1], image)  # after it (the decode applies the EXIF orientation)
        if not mask.any():
            raise ValueError("the mask is empty: draw a hole with the brush or the rectangle first")
        if mask.all():
            raise ValueError("the mask covers the whole image: leave some context to copy from")
        with self.lock:
            start = time.perf_counter()
            G = self.generator
            x, m, xp, mp = model_input(image, mask, self.device, self.color_order)
            xin = xp * (1 - mp)
            amap = attention_map(G, xin, mp) if G.attention else None  # kept for the clicks
            out = hole_only_forward(G, xin, mp, return_offsets=G.attention, amap=amap)
            result, coarse = composite_images(x, m, out, self.color_order)
            flow = None
            if G.attention:  # the offsets of the cells that hold a hole pixel, coloured; white elsewhere
                cells = F.max_pool2d(mp, 8)[:, 0] > 0
                flow = flow_picture(out.offsets * cells[:, None], tuple(xp.shape[-2:]), mask.shape)
            fill = Fill(image, mask, result, coarse, flow, amap, time.perf_counter() - start)
            return self._store(self.fills, fill), fill

    def sources(self, fill_id: str, point: tuple[int, int], k: int = 5) -> tuple[Fill, Sources]:
        """The `k` heaviest sources of the query under `point` (row, column) of a fill -> (the fill, `Sources`)."""
        with self.lock:
            fill = self._get(self.fills, fill_id, "fill")
            (h, w), (row, col) = fill.mask.shape, point
            if not (0 <= row < h and 0 <= col < w):
                raise ValueError(f"point must be (row, column) inside the {w}x{h} image, got {point}")
            if fill.amap is None:
                raise ValueError("this model has no contextual attention: there are no sources to show")
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 32:
                raise ValueError(f"k must be an integer from 1 to 32, got {k!r}")
            src = top_sources(fill.amap, point, k)
            # the model saw the image padded to multiples of 8: clip the patches to the image itself
            boxes = [(t, l, min(bh, h - t), min(bw, w - l)) for t, l, bh, bw in src.boxes]
            return fill, Sources(src.query, boxes, src.weights, src.keys)


def _bytes(fills: OrderedDict) -> int:
    """The bytes of the tensors the kept fills' attention maps hold."""
    total = 0
    for fill in fills.values():
        if fill.amap is not None:
            *prepared, keys = fill.amap.prepared[1:]
            tensors = [fill.amap.xt, fill.amap.features, fill.amap.mask, *prepared, keys.scored]
            total += sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
    return total


@functools.cache
def legend_url() -> str:
    """The flow legend (`holdout.flow_legend`) as a PNG data URL, made once."""
    return png_data_url(flow_legend(101))
