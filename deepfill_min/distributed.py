"""Data parallel training under ``torchrun``: the process group, the critics' one all-reduce, a barrier.

``torchrun --nproc_per_node=N -m deepfill_min train ...`` starts N processes with ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` set. Each process picks its own GPU (``torch.cuda.set_device(LOCAL_RANK)``, before anything touches
CUDA) and joins the group (NCCL on GPUs, gloo on CPUs). The generator is wrapped in ``DistributedDataParallel``; the
critics are not, because DDP does not support the double backward of the gradient penalty, so their gradients are
averaged here, in one flat buffer and one collective per critic update instead of one per parameter. Decisions that
every rank must take together (stop on Ctrl-C, stop on a NaN) ride on the log's all-reduce (`deepfill_min.runlog`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from .config import resolve_device


@dataclass(frozen=True)
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0


def setup(device_name: str) -> tuple[World, torch.device]:
    """This process's place in the run (from torchrun's variables) and its device; joins the group when N > 1."""
    world = World(*(int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0))))
    device = resolve_device(device_name, world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def average_gradients(parameters, world: World) -> None:  # noqa: ANN001  (an iterable of parameters)
    r"""$g \leftarrow \frac{1}{N}\sum_{ranks} g$ for every gradient, in one flat all-reduce."""
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world.size
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(averaged)


def barrier(world: World) -> None:
    """Wait for every rank (no-op alone): e.g. until rank 0 has written a checkpoint."""
    if world.size > 1:
        dist.barrier()


def close() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
