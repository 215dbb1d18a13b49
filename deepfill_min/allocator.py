"""Keep freed memory in the process: large tensors re-use pages instead of faulting in fresh ones.

PyTorch's CPU tensors come from `malloc`. glibc serves every request above its mmap threshold (128 KiB to 32 MiB,
adaptive) with a fresh `mmap` and gives it back to the kernel on `free`, so each large temporary (a 64 MiB score
matrix at 512², a padded copy of a feature map) is paid for twice: the copy itself, and one page fault per 4 KiB
page on its first touch. On the 2-core VM of docs/benchmarks.md the 512² generator forward takes 135,000 page
faults and 1.1 s; with freed memory kept in the heap, 500 faults and 0.85 s, the same values bit for bit.

`keep_freed_memory` sets two glibc options for the whole process: no `mmap` for large requests (``M_MMAP_MAX = 0``)
and no trimming of the heap's top (``M_TRIM_THRESHOLD`` at its maximum). The price: the process's resident memory
stays at its high-water mark after a large image instead of shrinking. `load_generator` calls it, so inference
(the command, `inpaint`, the app) gets it; set ``DEEPFILL_MIN_KEEP_FREED_MEMORY=0`` before to leave the allocator
alone. Training does not call it: at 128², batch 4, it changed nothing measurable. Elsewhere than Linux with glibc
it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for re-use (once per process); True if the options are in effect."""
    global _applied
    if _applied is None:
        _applied = False
        if os.environ.get("DEEPFILL_MIN_KEEP_FREED_MEMORY", "1") != "0" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)  # the C library the interpreter already uses
            _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
