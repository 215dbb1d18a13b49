"""``deepfill-min inpaint`` on files: pairing images with masks, planning the outputs, running one pair.

**Single mode**: one image, one mask, one output, and optionally the coarse result and the attention flow.
**Folder mode**: every image of the ``--image`` folder (not recursive; hidden files skipped) is paired with the mask
of the same name in the ``--mask`` folder, or else the one mask with the same stem (``photo.jpg`` with
``photo.png``); the outputs keep the image's name, in the ``--out`` (and ``--coarse-out``, ``--flow-out``) folders.
An image without a mask is a failure of its own and does not stop the others.

Before any work is done the plan is checked, so that nothing is lost: every output format can hold an RGB image, no
output is one of the inputs (or their folder), and no two outputs are the same file. A pair's outputs are computed
first and then written atomically (`deepfill_min.files`).
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import IMAGE_EXTENSIONS, is_image_name
from .files import check_image_out, write_image
from .generator import Generator
from .images import check_file, read_image, read_mask
from .inpaint import inpaint

OPTIONS = {"image": "--out", "coarse": "--coarse-out", "flow": "--flow-out"}


@dataclass
class Job:
    image: Path
    mask: Path
    outputs: dict[str, Path]  # "image", "coarse", "flow" -> where to write it


def same_path(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name the same file or folder (through links too)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _check_distinct(targets: dict[str, Path], inputs: dict[str, Path]) -> None:
    """No output overwrites an input or another output."""
    items = list(targets.items())
    for i, (option, path) in enumerate(items):
        for name, source in inputs.items():
            if same_path(path, source):
                raise ValueError(f"{option} {path} is the {name} itself: refusing to overwrite an input")
        for other, path2 in items[i + 1 :]:
            if same_path(path, path2):
                raise ValueError(f"{option} and {other} are the same path {path}")


def _single(image: Path, mask: Path, targets: dict[str, Path]) -> Job:
    check_file(image, "--image")
    if mask.is_dir():
        raise ValueError(f"--mask {mask} is a folder but --image {image} is a file")
    check_file(mask, "--mask")
    for option, path in targets.items():
        check_image_out(path, option)
    _check_distinct(targets, {"--image": image, "--mask": mask})
    return Job(image, mask, {key: targets[option] for key, option in OPTIONS.items() if option in targets})


def _folder(image: Path, mask: Path, targets: dict[str, Path]) -> tuple[list[Job], list[str]]:
    if not mask.is_dir():
        raise ValueError(f"--image {image} is a folder, so --mask must be a folder of masks with the same names")
    if same_path(image, mask):
        raise ValueError(f"--mask {mask} is the --image folder; keep the masks in a folder of their own")
    for option, folder in targets.items():
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{option} {folder} is a file; with an --image folder it must be a folder")
    _check_distinct(targets, {"--image folder": image, "--mask folder": mask})
    images = sorted(p for p in image.iterdir() if is_image_name(p) and p.is_file())
    if not images:
        raise ValueError(f"--image folder {image} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(mask.iterdir()):
        if is_image_name(p) and p.is_file():
            by_stem[p.stem].append(p)
    jobs, failures = [], []
    for p in images:
        found = [mask / p.name] if (mask / p.name).is_file() else by_stem.get(p.stem, [])
        if len(found) != 1:
            why = "no mask" if not found else f"{len(found)} masks ({', '.join(f.name for f in found)})"
            failures.append(f"{p.name}: {why} named {p.stem}.* in --mask folder {mask}")
            continue
        outputs = {key: targets[option] / p.name for key, option in OPTIONS.items() if option in targets}
        jobs.append(Job(p, found[0], outputs))
    return jobs, failures


def plan_jobs(image: Path, mask: Path, out: Path, coarse_out: str | None = None,
              flow_out: str | None = None) -> tuple[list[Job], list[str]]:  # fmt: skip
    """The pairs to inpaint and the images that cannot be paired (folder mode), after checking every path."""
    if not image.exists():
        raise FileNotFoundError(f"--image {image} does not exist")
    if not mask.exists():
        raise FileNotFoundError(f"--mask {mask} does not exist")
    targets = {"--out": out, "--coarse-out": coarse_out, "--flow-out": flow_out}
    targets = {option: Path(path) for option, path in targets.items() if path is not None}
    if image.is_dir():
        return _folder(image, mask, targets)
    return [_single(image, mask, targets)], []


def inpaint_job(job: Job, generator: Generator, color_order: str, threshold: float, channel: str | int,
                official: bool, full: bool = False) -> None:  # fmt: skip
    """Read one pair, check that they fit, inpaint, and write the outputs (each atomically)."""
    image = read_image(job.image, "image")
    mask = read_mask(job.mask, threshold, channel)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {job.mask} is {mask.shape[1]}x{mask.shape[0]} but image {job.image} is "
                         f"{image.shape[1]}x{image.shape[0]} (width x height, as displayed)")  # fmt: skip
    if mask.all():
        raise ValueError(f"mask {job.mask} covers the whole image: there is no context to inpaint from")
    if not mask.any():
        warnings.warn(f"mask {job.mask} is empty: {job.outputs['image']} is the image unchanged", stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the empty mask, said above with the file names
        try:
            result = inpaint(image, mask, generator, color_order, official, "flow" in job.outputs, full)
        except ValueError as err:  # e.g. --official on an image below 8x8
            raise ValueError(f"image {job.image}: {err}") from None
    pictures: dict[str, np.ndarray | None] = {"image": result.image, "coarse": result.coarse, "flow": result.flow}
    for key, path in job.outputs.items():
        write_image(pictures[key], path)
