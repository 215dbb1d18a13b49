"""torch's float32 matmul against `deepfill_min.gemm.mm_nt` (the same product as a oneDNN 1×1 convolution) on the CPU.

The shapes are the attention's products: the scores (queries × key filters, K = 9C) and the paste (weights × block
filters, K = the blocks kept) of a 512² forward (a 256² hole, masked keys left out), the 1024² hole-only command
(96×128 hole) and one sample of the training shape (64² features, 1,024 keys). No autograd, one thread pool of the
default size; the minimum of `--repeats` after one untimed call.

    python benchmarks/gemm.py [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
from attention import _time  # benchmarks/attention.py: the minimum of `repeats` after one untimed call

from deepfill_min.allocator import keep_freed_memory
from deepfill_min.gemm import mm_nt

CASES = {  # name: (n, K, M) for A (n, K) · B (M, K)ᵀ
    "512² scores": (4096, 1152, 3072),
    "512² paste": (4225, 3136, 512),
    "1024² hole-only scores": (573, 1152, 16384),
    "1024² hole-only paste": (525, 16641, 512),
    "training shape scores, one sample": (1024, 1152, 1024),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    keep_freed_memory()  # as in inference (`load_generator`): no page faults on each fresh result
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for name, (n, k, m) in CASES.items():
            a, b = torch.randn(1, n, k), torch.randn(1, m, k)
            matmul = _time(lambda a=a, b=b: a @ b.transpose(1, 2), args.repeats)
            conv = _time(lambda a=a, b=b: mm_nt(a, b), args.repeats)
            gflop = 2 * n * k * m / 1e9
            rows.append({"case": name, "n": n, "K": k, "M": m, "matmul_s": matmul, "conv_s": conv})
            print(f"{name:34s} {n}x{k}x{m}: matmul {matmul * 1e3:7.1f} ms ({gflop / matmul:5.0f} GFLOP/s), "
                  f"1x1 conv {conv * 1e3:7.1f} ms ({gflop / conv:5.0f} GFLOP/s)")  # fmt: skip
    if args.json:
        info = {"rows": rows, "torch": torch.__version__, "python": platform.python_version(),
                "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
