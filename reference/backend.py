"""One code path for NumPy and CuPy.

Every function in `reference` starts with ``xp = get_array_module(x)`` and then uses only the part of the NumPy
namespace that CuPy implements too, so the same lines run on the CPU (NumPy) and on a GPU (CuPy).

CuPy is optional. On a machine without a GPU ``import cupy`` may succeed while every CUDA call raises, so
`gpu_available` checks the import, the device count *and* a tiny kernel, catching every exception.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np


def _cupy() -> ModuleType | None:
    try:
        import cupy  # noqa: PLC0415  (optional dependency)
    except Exception:  # noqa: BLE001  (a broken CUDA install raises anything)
        return None
    return cupy


def get_array_module(*arrays: Any) -> ModuleType:
    """Return `cupy` if any argument is a CuPy array, else `numpy` (CuPy's own rule)."""
    cupy = _cupy()
    if cupy is not None:
        return cupy.get_array_module(*arrays)
    return np


@functools.cache
def gpu_available() -> bool:
    """True when CuPy imports, sees a device, and can run a kernel on it."""
    cupy = _cupy()
    if cupy is None:
        return False
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False
        return float((cupy.arange(4, dtype=cupy.float32) ** 2).sum()) == 14.0
    except Exception:  # noqa: BLE001
        return False


def to_numpy(x: Any) -> np.ndarray:
    """Bring a NumPy or CuPy array to the host."""
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else np.asarray(x)
