"""`gemm.mm_nt` (A·Bᵀ as a 1×1 convolution on the CPU) is the matmul: to float32 rounding, and the path it claims."""

from __future__ import annotations

import torch
from aten_ops import AtenOps
from hypothesis import given
from hypothesis import strategies as st

from deepfill_min.gemm import mm_nt


@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.booleans(), st.booleans(),
       st.integers(0, 2**16))  # fmt: skip
def test_mm_nt_is_the_matmul(batch, n, m, k, shared_b, transposed_a, seed):
    """Any sizes, B shared by the batch or not, A stored transposed (not contiguous): A·Bᵀ to float32 rounding."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, k, n, generator=g).transpose(1, 2) if transposed_a else torch.randn(batch, n, k, generator=g)
    b = torch.randn(1 if shared_b else batch, m, k, generator=g)
    with torch.no_grad():
        y = mm_nt(a, b)
    ref = a.double() @ b.double().transpose(1, 2)
    assert y.shape == (batch, n, m) and y.dtype == torch.float32 and y.is_contiguous()
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-5 * k**0.5 * float(ref.abs().max()) + 1e-6)


def test_float32_without_autograd_runs_a_convolution_and_the_rest_the_matmul():
    a, b = torch.randn(2, 30, 20), torch.randn(2, 25, 20)
    with torch.no_grad(), AtenOps() as ops:
        mm_nt(a, b)
    assert torch.ops.aten.convolution in ops.count and not {torch.ops.aten.bmm, torch.ops.aten.mm} & ops.count.keys()
    # float64 (oneDNN has no float64 convolution): the matmul itself, bit for bit
    with torch.no_grad(), AtenOps() as ops:
        y = mm_nt(a.double(), b.double())
    assert torch.ops.aten.convolution not in ops.count and torch.equal(y, a.double() @ b.double().transpose(1, 2))
    # with a gradient to compute: the matmul, and its gradient
    a.requires_grad_(True)
    with AtenOps() as ops:
        y = mm_nt(a, b)
    assert torch.ops.aten.convolution not in ops.count
    (grad,) = torch.autograd.grad(y.sum(), a)
    torch.testing.assert_close(grad, b.sum(1, keepdim=True).expand(-1, 30, -1))
