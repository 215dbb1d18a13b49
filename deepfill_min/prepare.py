"""``deepfill-min prepare-data SRC DST --size 256``: a resized copy of a data set, made once, for fast training input.

Training at 256×256 from CelebA-HQ's 1024×1024 JPEGs spends most of its input time decoding pixels it throws away.
This writes every readable image of SRC (a folder, recursively, or a ``.flist``) to DST with its short side reduced
to ``--size`` (aspect ratio kept, never enlarged; JPEGs decoded in draft mode first), EXIF orientation applied, in
the same format (BMP and TIFF become PNG; JPEGs at quality 95), mirroring the folder structure, and DST/files.flist
listing them. Unreadable files are skipped with a warning and counted. Each file is written atomically, so an
interrupted run can simply be started again: files already in DST are kept (``--overwrite`` redoes them).
"""

from __future__ import annotations

import multiprocessing
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .data import list_images
from .files import check_folder_out, write_atomic, write_image
from .images import open_rgb
from .pairs import same_path

SUFFIXES = {".bmp": ".png", ".tif": ".png", ".tiff": ".png"}


def _target(source: Path, path: Path, dst: Path, index: int) -> Path:
    root = source if source.is_dir() else source.parent
    try:
        relative = path.relative_to(root)
    except ValueError:  # a .flist entry outside the list's folder
        relative = Path(f"{index:08d}_{path.name}")
    return (dst / relative).with_suffix(SUFFIXES.get(path.suffix.lower(), path.suffix.lower()))


def resize_one(job: tuple[Path, Path, int, bool]) -> str | None:
    """Write one resized image; None when done, else why it was skipped (one line)."""
    path, out, size, overwrite = job
    if out.exists() and not overwrite:
        return None
    try:
        img = open_rgb(path, draft=(size, size))
    except (OSError, ValueError) as err:
        return str(err)
    scale = size / min(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    write_image(np.asarray(img), out)
    return None


def prepare_data(src: str | Path, dst: str | Path, size: int = 256, workers: int = 1, overwrite: bool = False) -> Path:
    """Resize every image of `src` into `dst` (see the module docstring); returns the written ``files.flist``."""
    src, dst = Path(src), check_folder_out(dst, "DST")
    if size < 8:
        raise ValueError(f"--size must be at least 8, got {size}")
    root = src if src.is_dir() else src.parent
    if same_path(dst, root) or (dst.resolve().is_relative_to(root.resolve()) and src.is_dir()):
        raise ValueError(f"DST {dst} must not be SRC {src} or inside it")
    files = list_images(src)
    jobs = [(p, _target(src, p, dst, i), size, overwrite) for i, p in enumerate(files)]
    with multiprocessing.Pool(workers) if workers > 1 else nullcontext() as pool:
        mapped = pool.imap(resize_one, jobs, chunksize=8) if pool is not None else map(resize_one, jobs)
        results = list(tqdm(mapped, total=len(jobs), unit="image", disable=None))
    written = [out for (_, out, _, _), why in zip(jobs, results, strict=True) if why is None]
    if not written:
        raise ValueError(f"none of the {len(files)} images of {src} could be read (the first: {files[0]})")
    for why in results:
        if why is not None:
            warnings.warn(f"skipping unreadable image: {why}", stacklevel=2)
    listing = "".join(f"{p.relative_to(dst)}\n" for p in written).encode()
    return write_atomic(dst / "files.flist", lambda f: f.write(listing))

