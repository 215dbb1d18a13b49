"""``deepfill-min evaluate``: the paper's metrics for a trained model and its baselines, on a fixed mask set.

Every image is evaluated twice: with the centred validation hole (the official "static view", §8) and with one
box of the same size at a random place drawn from a seeded generator (the same boxes on every run). Each method's
result is scored on the hole and on the whole image (`deepfill_min.metrics`). The methods, so that a number means
something:

* ``mean fill``: every hole pixel gets the image's mean known colour;
* ``cv2 telea`` and ``cv2 ns``: OpenCV's ``cv2.inpaint`` (only when ``opencv-python`` is installed);
* ``coarse``: a generator's stage 1 alone, composited;
* ``model``: the full generator, composited (one pair of rows per checkpoint, labelled).

On the built-in held-out split the hole's mean L1 is also given per image family (stripes, bricks, dots,
landscape, photo), where the families differ most: a pattern can be continued exactly, a photo cannot.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from .config import make_config
from .data import BuiltinImages
from .files import write_atomic
from .generator import Generator
from .holdout import centre_mask, inpaint_batch, mean_fill
from .masks import bbox2mask, random_bbox
from .metrics import METRICS, region_metrics
from .train import make_dataset


def _cv2_methods() -> dict:
    try:
        import cv2  # noqa: PLC0415  (optional dependency)
    except ImportError:
        return {}

    def run(flag):
        def fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            img = ((x[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)[..., ::-1].copy()
            out = cv2.inpaint(img, (mask[0, 0].numpy() * 255).astype(np.uint8), 3, flag)[..., ::-1]
            return torch.from_numpy(out.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]

        return fill

    return {"cv2 telea": run(cv2.INPAINT_TELEA), "cv2 ns": run(cv2.INPAINT_NS)}


def evaluation_masks(n: int, image_size: tuple[int, int], hole_size: tuple[int, int], seed: int = 0):
    """The fixed mask set: ("centre", mask) for every image, then ("random box", a box of `hole_size` placed by a
    seeded generator)."""
    boxes = random_bbox(n, image_size, hole_size, generator=torch.Generator().manual_seed(seed))
    random = bbox2mask(boxes, image_size, (0, 0))
    return {"centre": [centre_mask(image_size, hole_size)] * n, "random box": [m[None] for m in random]}


def _model_methods(label: str, generator: Generator) -> dict:
    generator.eval()
    suffix = f" ({label})" if label else ""
    return {
        f"coarse{suffix}": lambda x, m: inpaint_batch(generator, x, m)[1].x_stage1.cpu() * m + x * (1 - m),
        f"model{suffix}": lambda x, m: inpaint_batch(generator, x, m)[0].cpu(),
    }


def evaluate(generators: dict[str, Generator], images: torch.Tensor, hole_size: tuple[int, int],
             families: list[str] | None = None) -> list[dict]:  # fmt: skip
    """Mean metrics per (method, mask kind, region, group) over `images` (N, 3, H, W) in [-1, 1]; `generators` by
    label. The group is ``"all"``, and with `families` (one name per image) also each family, for the hole."""
    methods = {"mean fill": mean_fill, **_cv2_methods()}
    for label, generator in generators.items():
        methods.update(_model_methods(label, generator))
    groups = {"all": list(range(len(images)))}
    for i, family in enumerate(families or []):
        groups.setdefault(family, []).append(i)
    rows = []
    for kind, masks in evaluation_masks(len(images), tuple(images.shape[-2:]), hole_size).items():
        for name, method in methods.items():
            scores: dict[str, list[dict]] = {"hole": [], "image": []}
            for x, mask in zip(images, masks, strict=True):
                x = x[None]
                pred, truth = (method(x, mask).clamp(-1, 1) + 1) / 2, (x + 1) / 2
                scores["hole"].append(region_metrics(pred, truth, mask))
                scores["image"].append(region_metrics(pred, truth, torch.ones_like(mask)))
            for region, values in scores.items():
                for group, members in groups.items():
                    if group != "all" and region != "hole":
                        continue
                    means = {k: float(np.mean([values[i][k] for i in members])) for k in METRICS}
                    rows.append({"masks": kind, "region": region, "group": group, "method": name, "n": len(members),
                                 **means})  # fmt: skip
    return rows


def write_tables(rows: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    """results.csv and results.md (one Markdown table per mask kind and region, and the hole's mean L1 by family)."""
    out = Path(out_dir)
    keys = ["masks", "region", "group", "method", "n", *METRICS]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, keys)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "results.csv", lambda f: f.write(table.getvalue().encode()))
    lines = []
    every = [r for r in rows if r["group"] == "all"]
    for kind in dict.fromkeys(r["masks"] for r in rows):
        for region in ("hole", "image"):
            lines += [f"\n**{kind} masks, {region}** (n = {every[0]['n']}; L1 and L2 on [0, 1]; PSNR in dB)\n",
                      "| method | mean L1 | relative L1 | squared relative L2 | PSNR | TV | SSIM |",
                      "|---|---|---|---|---|---|---|"]  # fmt: skip
            for r in every:
                if r["masks"] == kind and r["region"] == region:
                    cells = [f"{r[k]:.2f}" if k == "psnr" else f"{r[k]:.4f}" for k in METRICS]
                    lines.append(f"| {r['method']} | {' | '.join(cells)} |")
        groups = list(dict.fromkeys(r["group"] for r in rows if r["masks"] == kind))
        if len(groups) > 1:
            by = {(r["method"], r["group"]): r for r in rows if r["masks"] == kind and r["region"] == "hole"}
            sizes = ", ".join(f"{g} {n}" for g, n in {g: r["n"] for (_, g), r in by.items()}.items() if g != "all")
            lines += [f"\n**{kind} masks, hole mean L1 by family** (images: {sizes})\n",
                      "| method | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]  # fmt: skip
            for method in dict.fromkeys(m for m, _ in by):
                lines.append(f"| {method} | " + " | ".join(f"{by[method, g]['mean_l1']:.4f}" for g in groups) + " |")
    write_atomic(out / "results.md", lambda f: f.write(("\n".join(lines).lstrip() + "\n").encode()))
    return out / "results.csv", out / "results.md"


def evaluation_images(data: str, image_size: tuple[int, int], n: int) -> tuple[torch.Tensor, list[str] | None]:
    """`n` held-out images (the built-in test split, or a folder / .flist, resized) and, for the built-in split,
    each image's family."""
    cfg = make_config("tiny", overrides=[f"image_size=[{image_size[0]},{image_size[1]}]",
                                         f"hole_size=[{image_size[0] // 2},{image_size[1] // 2}]"])  # fmt: skip
    dataset = make_dataset(data, "test", cfg)
    count = min(n, len(dataset))
    families = [dataset.family(i) for i in range(count)] if isinstance(dataset, BuiltinImages) else None
    return torch.stack([dataset.load(i, torch.Generator().manual_seed(i)) for i in range(count)]), families
