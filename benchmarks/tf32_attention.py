"""Would TF32 matmuls keep contextual attention faithful? An emulation on the CPU, against float64.

    python benchmarks/tf32_attention.py

TF32 (Ampere and later GPUs) multiplies with 10-bit mantissas. The attention's scores are matmuls of normalised
patches, sharpened by the softmax scale λ = 10, so their rounding reaches the weights amplified. This rounds the
layer's inputs to TF32 (round to nearest even on the float32 bits) and evaluates in float64, so the only error is
TF32's input rounding; the same inputs in float32 give float32's own error. Printed: the largest output error
relative to the output's scale, and the share of queries whose best key (the flow's arrow) changes. The model's
case: self-attention on ReLU features, a 16x16 hole at 1/4 resolution on a 64x64 feature map.
"""

from __future__ import annotations

import json
import platform

import torch

from deepfill_min import contextual_attention


def tf32(x: torch.Tensor) -> torch.Tensor:
    """Round float32 values to TF32's 10-bit mantissa (nearest, ties to even)."""
    bits = x.float().view(torch.int32)
    bits = (bits + 0x0FFF + ((bits >> 13) & 1)) & ~0x1FFF
    return bits.view(torch.float32)


def main() -> None:
    torch.manual_seed(0)
    f = torch.randn(4, 64, 64, 64).relu()
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    kwargs = dict(ksize=3, stride=1, rate=2, return_offsets=True)
    ref, ref_off = contextual_attention(f.double(), f.double(), mask.double(), **kwargs)
    rows = {}
    for name, x in (("float32", f.float()), ("tf32 inputs", tf32(f).double())):
        y, off = contextual_attention(x, x, mask.to(x.dtype), **kwargs)
        hole = mask.bool().expand_as(ref)
        err = (y.double() - ref).abs()
        rows[name] = {"max_err_rel": float(err.max() / ref.abs().max()),
                      "hole_mean_err_rel": float(err[hole].mean() / ref[hole].abs().mean()),
                      "changed_best_key": float((off != ref_off).any(1).float().mean())}  # fmt: skip
    print(json.dumps({"torch": torch.__version__, "python": platform.python_version(), **rows}, indent=1))


if __name__ == "__main__":
    main()
