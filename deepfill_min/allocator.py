"""Keep freed memory in the process: large tensors re-use pages instead of faulting in fresh ones.

PyTorch's CPU tensors come from `malloc`. glibc serves every request above its mmap threshold (128 KiB to 32 MiB,
adaptive) with a fresh `mmap` and gives it back to the kernel on `free`, so each large temporary (a 64 MiB score
matrix at 512², a padded copy of a feature map) is paid for twice: the copy itself, and one page fault per 4 KiB
page on its first touch. On the 2-core VM of docs/benchmarks.md the 512² generator forward takes 135,000 page
faults and 1.1 s; with freed memory kept in the heap, 500 faults and 0.85 s, the same values bit for bit.

`keep_freed_memory` sets two glibc options for the whole process: no `mmap` for large requests (``M_MMAP_MAX = 0``)
and no trimming of the heap's top (``M_TRIM_THRESHOLD`` at its maximum). The price is memory: the process's resident
memory stays at its high-water mark, and since one heap serves every request, freed blocks that are too small for
the next request fragment it (512² full forward: 506 MiB instead of 365; 1024²: 3.3 GiB instead of 1.2, for 9.6 s
instead of 17.7). Above a megapixel it runs away: the 2048² full forward was killed at the VM's 24 GiB (2.6 GiB
with glibc's default), and the 2048² hole-only pass with a 256² hole took 2.8 GiB instead of 1.7 (9.2 s instead of
13.8). So `for_image` restores glibc's mapping of large requests for the duration of a larger image's pass: the
inference entry points (`Generator.forward`, `hole_only_forward`, `attention_map`) are wrapped in it by
`sized_by_image`: memory first, above a megapixel.

`load_generator` calls `keep_freed_memory`, so inference (the command, `inpaint`, the app) gets it; set
``DEEPFILL_MIN_KEEP_FREED_MEMORY=0`` before to leave the allocator alone. Training does not call it: at 128², batch
4, it changed nothing measurable. Elsewhere than Linux with glibc it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's mallopt parameters (malloc.h)
DEFAULT_MMAP_MAX = 65536  # glibc's default M_MMAP_MAX
MMAP_THRESHOLD_MAX = 32 << 20  # the mmap threshold that glibc's adaptive default settles at for large temporaries
KEEP_MAX_PIXELS = 1024 * 1024  # images above this size get glibc's mapping of large requests (`for_image`)
_applied: bool | None = None
_mapping = 0  # large-image passes under way (`for_image`)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for re-use (once per process); True if the options are in effect."""
    global _applied
    if _applied is None:
        _applied = False
        if os.environ.get("DEEPFILL_MIN_KEEP_FREED_MEMORY", "1") != "0" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)  # the C library the interpreter already uses
            _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


@contextlib.contextmanager
def for_image(pixels: int) -> Iterator[None]:
    """Inside: for an image of more than KEEP_MAX_PIXELS `pixels`, requests of 32 MiB and more are mapped afresh and
    returned to the system on free (glibc's default behaviour for large temporaries), if `keep_freed_memory` is in
    effect; otherwise nothing changes."""
    global _mapping
    if not _applied or pixels <= KEEP_MAX_PIXELS:
        yield
        return
    libc = ctypes.CDLL(None)
    if _mapping == 0:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)  # (no effect outside: nothing is mapped there)
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
    _mapping += 1
    try:
        yield
    finally:
        _mapping -= 1
        if _mapping == 0:  # the last large image's pass is over (nested or concurrent ones keep it)
            libc.mallopt(M_MMAP_MAX, 0)


def sized_by_image(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn(first, x, ...)` (x: an image batch (B, C, H, W)) run under `for_image(H × W)`."""

    @functools.wraps(fn)
    def wrapped(first, x, *args, **kwargs) -> T:  # noqa: ANN001
        pixels = x.shape[-2] * x.shape[-1] if getattr(x, "ndim", 0) >= 2 else 0  # (bad input: fn's own error)
        with for_image(pixels):
            return fn(first, x, *args, **kwargs)

    return wrapped
