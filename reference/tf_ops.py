r"""The TensorFlow primitives DeepFill v1 is built from, with their exact semantics (spec §2).

Two details decide whether a port reproduces the official numbers:

* **TF-SAME padding** (§2.1). For an input of length $n$, kernel $k$, stride $s$ and dilation $d$,
  $$n_{out} = \lceil n / s \rceil,\quad p = \max((n_{out}-1)s + d(k-1) + 1 - n,\ 0),$$
  and TF puts $\lfloor p/2 \rfloor$ before and the rest after. For a stride-2 3×3 conv on an even input that is
  (0, 1): asymmetric, unlike PyTorch's ``padding=1``.
* **Nearest resize with align_corners=True** (§2.2). Output index $y$ reads input index
  $$\mathrm{src}(y) = \min(\mathrm{roundf}(y \cdot \tfrac{n_{in}-1}{n_{out}-1}),\ n_{in}-1)$$
  in float32 arithmetic, rounding half away from zero. Downsampling 64→32 therefore picks rows 0, 2, …, 30, 33, 35,
  …, 63: not a uniform subsampling. It has to be an index gather.

Everything here is NCHW and works on NumPy and CuPy arrays alike.
"""

from __future__ import annotations

import numpy as np

from .backend import get_array_module


def same_padding(n: int, k: int, s: int = 1, d: int = 1) -> tuple[int, int]:
    """TF-SAME padding (before, after) along one axis of length `n` (§2.1)."""
    if min(n, k, s, d) < 1:
        raise ValueError(f"same_padding needs positive n, k, s, d; got n={n}, k={k}, s={s}, d={d}")
    # $n_{out} = \lceil n/s \rceil$
    n_out = -(-n // s)
    # $p = \max((n_{out}-1)s + d(k-1) + 1 - n, 0)$, split floor(p/2) before, the rest after
    total = max((n_out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def nearest_ac_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source indices of TF1 ``resize_nearest_neighbor(align_corners=True)`` along one axis (§2.2)."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"nearest_ac_indices needs positive sizes; got n_in={n_in}, n_out={n_out}")
    # scale = (in-1)/(out-1) in float32 (in/out when out == 1), exactly as TF's CalculateResizeScale
    if n_out > 1:
        scale = np.float32(n_in - 1) / np.float32(n_out - 1)
    else:
        scale = np.float32(n_in) / np.float32(n_out)
    # y * scale, a float32 product
    v = (np.arange(n_out, dtype=np.float32) * np.float32(scale)).astype(np.float64)
    # roundf: half away from zero (v >= 0 here); v - floor(v) is exact, so this is roundf to the bit
    rounded = np.floor(v) + (v - np.floor(v) >= 0.5)
    return np.minimum(rounded.astype(np.int64), n_in - 1)


def resize_nearest_ac(x, size: tuple[int, int]):
    """Resize NCHW `x` to `size` = (h, w) by nearest neighbour with align_corners=True (an index gather)."""
    xp = get_array_module(x)
    rows = xp.asarray(nearest_ac_indices(x.shape[2], size[0]))
    cols = xp.asarray(nearest_ac_indices(x.shape[3], size[1]))
    return x[:, :, rows][:, :, :, cols]


def pad_same(x, k: int, s: int):
    """Zero-pad the two spatial axes of NCHW `x` by the TF-SAME rule for kernel `k` and stride `s`."""
    xp = get_array_module(x)
    pt, pb = same_padding(x.shape[2], k, s)
    pl, pr = same_padding(x.shape[3], k, s)
    return xp.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def extract_patches(x, k: int, s: int):
    """``tf.extract_image_patches`` with SAME padding, in NCHW.

    Returns an array of shape (N, L, C, k, k): patch ``l = i * n_w + j`` is ``x_pad[:, :, i*s:i*s+k, j*s:j*s+k]``,
    numbered row-major over the ``n_h × n_w`` grid of patch positions.
    """
    xp = get_array_module(x)
    xpad = pad_same(x, k, s)
    n, c = x.shape[:2]
    n_h, n_w = -(-x.shape[2] // s), -(-x.shape[3] // s)
    # sliding windows: (N, C, H', W', k, k), then keep every s-th window
    win = xp.lib.stride_tricks.sliding_window_view(xpad, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    win = win[:, :, :n_h, :n_w]
    # (N, C, n_h, n_w, k, k) -> (N, n_h*n_w, C, k, k)
    return xp.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n, n_h * n_w, c, k, k)
