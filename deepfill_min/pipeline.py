r"""The training input pipeline: whole batches built in DataLoader workers from counters, not from a random stream.

One training iteration consumes ``d_steps`` critic batches (phases 0 … d_steps-1) and one generator batch (phase
``PHASE_G``). Batch (step, phase) of rank r is a pure function of its counters: sample i draws everything random
about it (which image, its crop, its box and hole or strokes, the gradient penalty's two $\alpha$) from a
``torch.Generator`` seeded by a hash of (seed, r, step, phase, i), and a shared hole (``mask_mode="shared"``) from
(seed, r, step, phase, -1). Hence:

* a batch is the same whatever the number of workers, and whichever worker builds it;
* a resumed run needs only the step to continue the exact stream (no random state in the checkpoint);
* every rank draws different data, also after a resume with any number of ranks.

Batches travel as uint8 images (B, 3, H, W), uint8 holes (1 or B, 1, H, W), the boxes as a list of
[top, left, height, width] and the penalty's $\alpha$ as float32 (2, B) (local, global): a quarter of the bytes of
float images. `to_device` moves them (``non_blocking`` from pinned memory on CUDA) and normalises on the device,
$x / 127.5 - 1$, the same arithmetic as `deepfill_min.data.to_tensor`.

The loader (`make_loader`) runs ``num_workers`` persistent worker processes (0: in the training process), prefetches
``prefetch`` batches per worker and pins memory when the device is CUDA. Its sampler is endless and starts at any
(step, phase): `BatchStream` restarts it when the trainer asks for a batch other than the next one (a resume, a
notebook calling ``d_step`` by hand).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import numpy as np
import torch

from .config import Config
from .masks import bbox2mask, brush_stroke_mask, random_bbox

PHASE_G = -1  # the generator's batch of an iteration; the critics' are phases 0 … d_steps-1
SHARED = -1  # the sample counter of a batch's shared hole


def counter_seed(*counters: int) -> int:
    """A 63-bit seed from integer counters (BLAKE2b): the same on every machine, unrelated for neighbouring counters."""
    data = b"".join(int(c).to_bytes(8, "little", signed=True) for c in counters)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def counter_generator(*counters: int) -> torch.Generator:
    return torch.Generator().manual_seed(counter_seed(*counters))


def default_workers(world: int = 1) -> int:
    """Worker processes per rank when ``num_workers=-1``: the CPU cores this rank may use, minus its own, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(world, 1) - 1))


def sample_hole(cfg: Config, generator: torch.Generator) -> tuple[torch.Tensor, list[int]]:
    """One hole (1, H, W) uint8 and its box [top, left, height, width] (§8): a shrunk box, or strokes inside it."""
    box = random_bbox(1, cfg.image_size, cfg.hole_size, cfg.margin, generator)
    if cfg.mask_type == "bbox":
        mask = bbox2mask(box, cfg.image_size, cfg.max_delta, generator)[0]
    else:  # free-form strokes drawn inside the box
        t, l, h, w = box[0].tolist()
        mask = torch.zeros(1, *cfg.image_size)
        mask[:, t : t + h, l : l + w] = brush_stroke_mask(1, cfg.hole_size, generator)[0]
    return mask.to(torch.uint8), box[0].tolist()


class Batches(torch.utils.data.Dataset):
    """Map-style dataset whose item (step, phase) is a whole training batch of one rank (see the module docstring)."""

    def __init__(self, data, cfg: Config, rank: int = 0) -> None:  # noqa: ANN001  (ImageFiles or BuiltinImages)
        self.data, self.cfg, self.rank = data, cfg, rank

    def __len__(self) -> int:  # endless in truth; a length keeps DataLoader's checks happy
        return 2**62

    def __getitem__(self, key: tuple[int, int]) -> dict:
        cfg, (step, phase) = self.cfg, key
        images, holes, boxes, alphas = [], [], [], []
        shared = None
        if cfg.mask_mode == "shared":
            shared = sample_hole(cfg, counter_generator(cfg.seed, self.rank, step, phase, SHARED))
        for i in range(cfg.batch_size):
            g = counter_generator(cfg.seed, self.rank, step, phase, i)
            index = int(torch.randint(len(self.data), (), generator=g))
            images.append(self.data.load_uint8(index, g))
            if shared is None:
                hole, box = sample_hole(cfg, g)
                holes.append(hole)
                boxes.append(box)
            alphas.append(torch.rand(2, generator=g))
        if shared is not None:
            holes, boxes = [shared[0]], [shared[1]]
        return {"image": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
                "mask": torch.stack(holes), "boxes": boxes, "alpha": torch.stack(alphas, dim=1)}  # fmt: skip


class KeySampler(torch.utils.data.Sampler):
    """(step, phase) keys from `start` on, endlessly, in the order an iteration consumes them.

    The steps before `warmup` have the generator's phase alone (the reconstruction warm-up); later steps `phases`.
    """

    def __init__(self, phases: list[int], start: tuple[int, int] = (0, 0), warmup: int = 0) -> None:
        self.phases, self.start, self.warmup = phases, start, warmup

    def phases_at(self, step: int) -> list[int]:
        return [PHASE_G] if step < self.warmup else self.phases

    def after(self, key: tuple[int, int]) -> tuple[int, int]:
        step, phase = key
        phases = self.phases_at(step)
        if phase in phases and phases.index(phase) + 1 < len(phases):
            return step, phases[phases.index(phase) + 1]
        return step + 1, self.phases_at(step + 1)[0]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        key = self.start
        while True:
            yield key
            key = self.after(key)


def make_loader(batches: Batches, sampler: KeySampler, num_workers: int, pin_memory: bool,
                prefetch: int = 2) -> torch.utils.data.DataLoader:  # fmt: skip
    """The DataLoader of whole batches (``batch_size=None``): persistent workers, prefetching, pinned memory."""
    workers = dict(persistent_workers=True, prefetch_factor=prefetch) if num_workers > 0 else {}
    return torch.utils.data.DataLoader(batches, batch_size=None, sampler=sampler, num_workers=num_workers,
                                       pin_memory=pin_memory, generator=torch.Generator().manual_seed(0),
                                       **workers)  # fmt: skip


class BatchStream:
    """Hands out batch (step, phase), from the running loader when it is the next one, else from a restarted one."""

    def __init__(self, batches: Batches, phases: list[int], num_workers: int, pin_memory: bool,
                 warmup: int = 0) -> None:  # fmt: skip
        self.sampler = KeySampler(phases, warmup=warmup)
        self.loader = make_loader(batches, self.sampler, num_workers, pin_memory)
        self._iterator, self._next = None, None

    def get(self, step: int, phase: int) -> dict:
        key = (step, phase)
        if self._iterator is None or key != self._next:
            self.sampler.start = key
            self._iterator = iter(self.loader)
        self._next = self.sampler.after(key)
        return next(self._iterator)


def to_device(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list, torch.Tensor]:
    """(images in [-1, 1], holes as floats, boxes, α) on `device`: asynchronous copies, normalised there."""
    non_blocking = device.type == "cuda"
    x = batch["image"].to(device, non_blocking=non_blocking).float().div_(127.5).sub_(1)
    mask = batch["mask"].to(device, non_blocking=non_blocking).float()
    return x, mask, batch["boxes"], batch["alpha"].to(device, non_blocking=non_blocking)
