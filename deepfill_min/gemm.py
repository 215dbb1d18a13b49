r"""Matrix products on the CPU through oneDNN's convolution instead of the BLAS.

torch's float32 matmul on the CPU calls the BLAS it was built with (MKL in the official wheels), which on AMD
processors takes a slower path than oneDNN's own JIT kernels, the ones behind every convolution. On the project's
2-core EPYC the attention's score product at 512², (4096 × 1152) · (1152 × 3072), takes 157 ms as a matmul and 78 ms
as the 1×1 convolution it also is (`benchmarks/gemm.py`).

$A B^\top$, with $A$ of shape (n, K) and $B$ of shape (M, K), is a 1×1 convolution:

* the image is $A$ viewed as (1, K, n, 1) in **channels-last** memory, which is $A$'s own row-major memory (no copy);
* the M filters are the rows of $B$, viewed as (M, K, 1, 1);
* the output (1, M, n, 1) in channels-last memory is $A B^\top$, (n, M) row-major, again without a copy.

Both products of contextual attention have this form: the scores $F_\downarrow W^\top$ (queries × key filters) and
the paste $\tilde a\, \beta$ with the blocks stored transposed (`deepfill_min.paste`). The convolution is used for
float32 CPU tensors outside autograd (inference, and the critic updates' generator pass); CUDA, float64 (oneDNN has
no float64 convolution), anything that needs a gradient and code under ``torch.compile`` take the matmul. The
values agree to float32 rounding (`tests/test_gemm.py`), not bit for bit: the two libraries sum in different orders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_ONEDNN = torch.backends.mkldnn.is_available()


def _by_convolution(a: torch.Tensor, b: torch.Tensor) -> bool:
    # (under torch.compile the compiler chooses its own kernels for the matmul)
    return (_ONEDNN and a.device.type == "cpu" and a.dtype == b.dtype == torch.float32
            and not torch.compiler.is_compiling()
            and not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)))  # fmt: skip


def _one(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, K), (M, K) -> (n, M) as a 1×1 convolution (module docstring)."""
    (n, k), m = a.shape, b.shape[0]
    image = a.contiguous().view(1, n, 1, k).permute(0, 3, 1, 2)  # (1, K, n, 1), channels-last strides
    y = F.conv2d(image, b.contiguous().view(m, k, 1, 1))
    return y.permute(0, 2, 3, 1).reshape(n, m)  # channels-last output: a view


def mm_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""$A B^\top$ per batch element: `a` (B, n, K) and `b` (B or 1, M, K) -> (B, n, M)."""
    if not _by_convolution(a, b) or 0 in (*a.shape, *b.shape):
        return a @ b.transpose(-1, -2)
    b = b.expand(a.shape[0], -1, -1)
    if a.shape[0] == 1:
        return _one(a[0], b[0]).unsqueeze(0)
    return torch.stack([_one(x, y) for x, y in zip(a, b, strict=True)])
