"""Held-out checks of a generator: hole L1 against the trivial fill, and the pictures a run writes.

`hole_l1` inpaints images with a centred hole and measures the mean absolute error inside the hole on the [0, 1]
pixel scale, for the model's composite and for the trivial fill (each image's mean colour of the known pixels). A
model has learned something useful once it beats the trivial fill.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reference.flow import flow_to_image

from .files import write_atomic
from .generator import Generator


def centre_mask(image_size: tuple[int, int], hole_size: tuple[int, int]) -> torch.Tensor:
    """The validation hole: the box of `hole_size` in the middle of the image, (1, 1, H, W)."""
    (H, W), (h, w) = image_size, hole_size
    mask = torch.zeros(1, 1, H, W)
    mask[..., (H - h) // 2 : (H + h) // 2, (W - w) // 2 : (W + w) // 2] = 1
    return mask


def mean_fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The trivial fill: every hole pixel gets its image's mean colour of the known pixels."""
    known = 1 - mask
    mean = (x * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True)
    return x * known + mean * mask


@torch.no_grad()
def inpaint_batch(G: Generator, x: torch.Tensor, mask: torch.Tensor, offsets: bool = False):
    """(composite, generator output) for images `x` in [-1, 1] and holes `mask`."""
    device = next(G.parameters()).device
    x, mask = x.to(device), mask.to(device)
    xin = x * (1 - mask)
    out = G(xin, mask, return_offsets=offsets)
    return out.x_stage2 * mask + xin * (1 - mask), out


def hole_l1(G: Generator, images: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean |prediction − truth| inside the hole, [0, 1] scale, for the model and for the trivial fill."""
    was_training = G.training
    G.eval()
    composite, _ = inpaint_batch(G, images, mask)
    G.train(was_training)
    hole = mask.to(composite.device).expand_as(composite) > 0
    truth = images.to(composite.device)
    model = ((composite - truth).abs()[hole].mean() / 2).item()
    trivial = ((mean_fill(truth, mask.to(truth.device)) - truth).abs()[hole].mean() / 2).item()
    return {"model": model, "mean_fill": trivial}


def to_images(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) floats in [0, 1] for matplotlib."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def flow_images(offsets: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Colour-coded offsets, upsampled (nearest) to `size`: (B, H, W, 3) in [0, 1]."""
    rgb = flow_to_image(offsets.cpu().numpy()).astype(np.float32) / 255
    ry, rx = size[0] // rgb.shape[2], size[1] // rgb.shape[3]
    return rgb.repeat(ry, axis=2).repeat(rx, axis=3).transpose(0, 2, 3, 1)


def flow_legend(size: int = 101) -> np.ndarray:
    """The flow colour wheel as a (size, size, 3) uint8 picture: every offset up to length 1 (row down, column right
    from the centre), coloured as `flow_to_image` colours a flow whose longest offset is 1, white outside the disc."""
    r = np.linspace(-1, 1, size)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    inside = dy**2 + dx**2 <= 1
    wheel = np.stack([np.where(inside, dy, 0), np.where(inside, dx, 0)])[None]  # (1, 2, size, size)
    return flow_to_image(wheel)[0].transpose(1, 2, 0).astype(np.uint8)


def save_grid(path: str | Path, columns: dict[str, np.ndarray], title: str = "") -> Path:
    """A figure with one column per entry of `columns` (title -> (N, H, W, 3)) and one row per image."""
    path = Path(path)
    fmt = figure_format(path)
    n = len(next(iter(columns.values())))
    from matplotlib.figure import Figure  # noqa: PLC0415  (not at import: `inpaint` needs only flow_images)

    # a bare Figure (no pyplot): nothing changes the user's matplotlib backend
    fig = Figure(figsize=(2 * len(columns), 2 * n))
    axes = fig.subplots(n, len(columns), squeeze=False)
    for j, (name, images) in enumerate(columns.items()):
        for i in range(n):
            axes[i, j].imshow(images[i], interpolation="nearest")
            axes[i, j].set_axis_off()
        axes[0, j].set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return write_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=100))


def figure_format(path: str | Path, what: str = "--out") -> str:
    """The matplotlib format of a figure file from its suffix (``.png`` -> ``png``), or a ValueError naming `what`."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    path, formats = Path(path), Figure().canvas.get_supported_filetypes()
    fmt = path.suffix[1:].lower()
    if fmt not in formats:
        raise ValueError(f"{what} {path}: unknown figure format {path.suffix or '(no suffix)'!r}; use one of "
                         f"{', '.join('.' + f for f in ('png', 'jpg', 'pdf', 'svg') if f in formats)}")  # fmt: skip
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder, expected a file name")
    return fmt


def save_samples(G: Generator, images: torch.Tensor, mask: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Input, coarse, refined, composite and attention flow for a few held-out images."""
    was_training = G.training
    G.eval()
    composite, out = inpaint_batch(G, images, mask, offsets=G.attention)
    G.train(was_training)
    size = tuple(images.shape[-2:])
    hole = mask.to(composite.device)
    columns = {
        "input": to_images(composite * (1 - hole) + hole),  # the hole drawn white
        "coarse": to_images(out.x_stage1),
        "refined": to_images(out.x_stage2),
        "composite": to_images(composite),
        "attention flow": flow_images(out.offsets, size) if out.offsets is not None else None,
        "truth": to_images(images),
    }
    columns = {k: v for k, v in columns.items() if v is not None}
    return save_grid(path, columns, title)
