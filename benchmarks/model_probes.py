"""Where a model's held-out error comes from: inference-time probes and an oracle's copy bound (docs/model-card.md).

    python benchmarks/model_probes.py                       # the shipped model, every probe
    python benchmarks/model_probes.py --checkpoint runs/x --fuse 3 7 --passes 1

The images and boxes are `deepfill-min evaluate`'s (the first `--n` held-out images at 128×128, a 48×48 box at a
seeded random place each); every figure is the hole's mean L1 on [0, 1] of the composite, overall and per family,
as a Markdown table row. The probes:

* ``fuse_k k``: the model with its attention's score propagation (the fuse) over k cells instead of the size it was
  trained with (1 = no propagation);
* ``stage 2 xN``: stage 2 run N times, each pass given the previous composite as its coarse input;
* ``truth as coarse``: stage 2 given the true image as its coarse input (what the refinement makes of perfect
  queries);
* ``copy bound``: no model. Every `cell`×`cell` block of the hole's box is replaced by the fully known block, at a
  shift that is a multiple of `step` pixels, that is closest to the truth. The truth chooses, so no method that
  copies such blocks can do better; `step` 8 is the attention's own grid at 128² (1/4 resolution, rate 2).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from deepfill_min import load_generator
from deepfill_min.evaluate import evaluation_images, evaluation_masks
from deepfill_min.metrics import region_metrics

SIZE, HOLE = (128, 128), (48, 48)


def row(name: str, pred: torch.Tensor, images: torch.Tensor, masks: torch.Tensor, families: list[str]) -> str:
    """'| name | all | per family |': the hole mean L1 of composites `pred` (N, 3, H, W) in [-1, 1]."""
    pred = pred * masks + images * (1 - masks)
    l1 = np.array([region_metrics((p[None] + 1) / 2, (t[None] + 1) / 2, m[None])["mean_l1"]
                   for p, t, m in zip(pred, images, masks, strict=True)])  # fmt: skip
    groups = [l1.mean()] + [l1[[f == g for f in families]].mean() for g in dict.fromkeys(families)]
    return f"| {name} | " + " | ".join(f"{v:.4f}" for v in groups) + " |"


def copy_bound(images: torch.Tensor, masks: torch.Tensor, step: int, cell: int) -> torch.Tensor:
    """Each `cell`-sized block of the hole's box from the known block (shift a multiple of `step`) nearest the truth."""
    out = images.clone()
    for img, m, dst in zip(images.numpy(), masks[:, 0].numpy(), out, strict=True):
        ys, xs = np.nonzero(m)
        for top in range(ys.min(), ys.max() + 1, cell):
            for left in range(xs.min(), xs.max() + 1, cell):
                h, w = min(cell, ys.max() + 1 - top), min(cell, xs.max() + 1 - left)
                oy, ox = top % step, left % step  # the candidate blocks' origins: the same phase on the grid
                blocks = sliding_window_view(img, (h, w), axis=(1, 2))[:, oy::step, ox::step]
                dist = np.abs(blocks - img[:, None, None, top : top + h, left : left + w]).mean((0, 3, 4))
                dist[sliding_window_view(m, (h, w))[oy::step, ox::step].any((-1, -2))] = np.inf  # hole pixels inside
                a, b = np.unravel_index(np.argmin(dist), dist.shape)
                sy, sx = oy + a * step, ox + b * step
                dst[:, top : top + h, left : left + w] = torch.from_numpy(img[:, sy : sy + h, sx : sx + w])
    return out


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="builtin")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--fuse", type=int, nargs="*", default=[1, 3, 5, 7, 9, 13])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--no-copy-bound", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    images, families = evaluation_images("builtin", SIZE, args.n)
    masks = torch.cat(evaluation_masks(len(images), SIZE, HOLE)["random box"])
    G, _ = load_generator(args.checkpoint)
    xin = images * (1 - masks)
    names = list(dict.fromkeys(families))
    print("| probe | all | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 2) + "|")
    out = G(xin, masks)
    print(row("the model", out.x_stage2, images, masks, families))
    print(row("its coarse stage", out.x_stage1, images, masks, families))
    trained = G.contextual_attention.kwargs["fuse_k"]
    for k in args.fuse:
        G.contextual_attention.kwargs["fuse_k"] = k
        print(row(f"fuse_k {k}" + " (as trained)" * (k == trained), G(xin, masks).x_stage2, images, masks, families))
    G.contextual_attention.kwargs["fuse_k"] = trained
    x = out.x_stage2 * masks + xin
    for n in range(2, args.passes + 1):
        x = G.refine(x, masks)[0] * masks + xin
        print(row(f"stage 2 x{n}", x, images, masks, families))
    print(row("truth as coarse", G.refine(images, masks)[0], images, masks, families))
    if not args.no_copy_bound:
        for step, cell in ((8, 16), (8, 8), (4, 16), (1, 16), (1, 48)):
            print(row(f"copy bound, {step}-px shifts, {cell}-px blocks", copy_bound(images, masks, step, cell),
                      images, masks, families))  # fmt: skip


if __name__ == "__main__":
    main()
