"""The training loader alone: images/s for folders of 256² and 1024² JPEGs with 0, 1 and 2 workers.

    python benchmarks/data.py [--images 64] [--batches 24]

Writes two folders of photo-like JPEGs (smooth colour fields with texture and edges, quality 95) to a temporary
directory, then pulls ``--batches`` training batches of 16 at 256×256 (resized, per-sample boxes: the
``celebahq-256`` setting) through the real pipeline (`deepfill_min.pipeline`) after two warm-up batches. From the
one-worker rate it derives the workers, and so the CPU cores, that one GPU at 8 iterations/s needs: 8 × 6 batches
× 16 images = 768 images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from deepfill_min.config import make_config
from deepfill_min.data import ImageFiles
from deepfill_min.pipeline import PHASE_G, Batches, BatchStream

NEEDED = 8 * 6 * 16  # images/s for 8 it/s at batch 16


def photo(size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    low = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    grain = Image.fromarray((rng.normal(0, 12, (size, size, 3)) + np.asarray(low)).clip(0, 255).astype(np.uint8))
    return grain.filter(ImageFilter.GaussianBlur(0.6))


def rate(folder: Path, workers: int, batches: int) -> float:
    cfg = make_config("celebahq-256", overrides=[f"data={folder}", "val_data=builtin", "batch_size=16"])
    stream = BatchStream(Batches(ImageFiles(folder, cfg.image_size), cfg), [0, 1, 2, 3, 4, PHASE_G], workers, False)
    keys = [(s, p) for s in range(batches) for p in [0, 1, 2, 3, 4, PHASE_G]][: batches + 2]
    for key in keys[:2]:
        stream.get(*key)
    t = time.perf_counter()
    for key in keys[2:]:
        stream.get(*key)
    return batches * 16 / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batches", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (256, 1024):
            folder = Path(tmp) / f"jpeg{size}"
            folder.mkdir()
            for i in range(args.images):
                photo(size, i).save(folder / f"{i:04d}.jpg", quality=95)
            for workers in (0, 1, 2):
                rows.append({"jpeg": f"{size}x{size}", "workers": workers,
                             "images_per_s": round(rate(folder, workers, args.batches), 1)})  # fmt: skip
    for size in ("256x256", "1024x1024"):
        one = next(r["images_per_s"] for r in rows if r["jpeg"] == size and r["workers"] == 1)
        rows.append({"jpeg": size, "workers_for_8_it_s": int(np.ceil(NEEDED / one)),
                     "cores_per_gpu": int(np.ceil(NEEDED / one)) + 1})  # fmt: skip
    print(json.dumps({"rows": rows, "cpu_count": os.cpu_count(), "torch": torch.__version__,
                      "python": platform.python_version(), "machine": platform.machine()}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
