"""Time and peak memory of contextual attention: ours vs a per-sample loop vs the NumPy reference.

Cases (each in a fresh subprocess, so that its peak RSS is its own):

* ``train``: the 256×256 training shape, B=16, C=128, 64×64 features, a 32×32 hole; forward (no grad) and
  forward + backward, for the batched layer, a per-sample-loop torch implementation of the same semantics (the way
  the official code and the popular port work: conv2d with the patches as weights, the fuse as two identity-kernel
  convs, conv_transpose2d), and the NumPy reference (forward only);
* ``matmuls``: the two batched matmuls the layer contains at that shape (scores and paste), alone;
* ``big``: the attention of a 2048×2048 image, a 512×512 feature map with C=128 and a centred 256×256 hole,
  forward only, with the default memory budget.

    python benchmarks/attention.py                # everything (the big case takes minutes on 2 cores)
    python benchmarks/attention.py --quick        # train + matmuls, no reference
    python benchmarks/attention.py --case big
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import reference
from deepfill_min.attention import contextual_attention, default_chunk_size
from deepfill_min.tf_ops import pad_same, resize_nearest_ac, unfold_same


def loop_contextual_attention(f, b, mask, ksize=3, rate=2, fuse_k=3, softmax_scale=10.0):
    """The per-sample loop: the official structure, spelled in torch (mask shared, stride 1, fuse on)."""
    B, C, H, W = b.shape
    K = 2 * rate
    raw = unfold_same(b, K, rate)  # (B, L, C*K*K)
    fd, bd = resize_nearest_ac(f, (H // rate, W // rate)), resize_nearest_ac(b, (H // rate, W // rate))
    fh, fw = fd.shape[-2:]
    md = resize_nearest_ac(mask, (fh, fw))
    mm = (F.unfold(pad_same(md[:1], ksize), ksize).mean(1) == 0).to(f.dtype).view(1, -1, 1, 1)
    eye = torch.eye(fuse_k, dtype=f.dtype).view(1, 1, fuse_k, fuse_k)
    out = []
    for n in range(B):
        w = unfold_same(bd[n : n + 1], ksize)[0].reshape(-1, C, ksize, ksize)
        w = w / torch.linalg.vector_norm(w.flatten(1), dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
        s = F.conv2d(pad_same(fd[n : n + 1], ksize), w)  # (1, L, fh, fw)
        s = F.conv2d(pad_same(s.permute(0, 2, 3, 1).reshape(1, 1, fh * fw, -1), fuse_k), eye)
        s = s.view(fh, fw, fh, fw).permute(1, 0, 3, 2).reshape(1, 1, fh * fw, -1)
        s = F.conv2d(pad_same(s, fuse_k), eye).view(fw, fh, fw, fh).permute(1, 0, 3, 2)
        s = s.reshape(1, fh, fw, -1).permute(0, 3, 1, 2) * mm
        a = F.softmax(s * softmax_scale, dim=1) * mm
        kernel = raw[n].view(-1, C, K, K)
        y = F.conv_transpose2d(a, kernel, stride=rate)
        pt, pl = (K - rate) // 2, (K - rate) // 2
        out.append(y[:, :, pt : pt + H, pl : pl + W] / 4.0)
    return torch.cat(out)


def _inputs(B, C, S, hole, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(B, C, S, S, generator=g, dtype=dtype).relu()
    mask = torch.zeros(1, 1, S, S, dtype=dtype)
    t = (S - hole) // 2
    mask[..., t : t + hole, t : t + hole] = 1
    return f * (1 - mask), mask


def _time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _check_loop():
    f, mask = _inputs(2, 8, 16, 6, torch.float64)
    ours, _ = contextual_attention(f, f, mask)
    assert torch.allclose(loop_contextual_attention(f, f, mask), ours, rtol=1e-10, atol=1e-10)


def run_case(case: str) -> dict:
    torch.set_num_threads(os.cpu_count())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res: dict = {"case": case}
    if case == "check":
        _check_loop()
        return {"case": case, "ok": True}
    if case in ("ours_fwd", "loop_fwd", "reference_fwd"):
        f, mask = _inputs(16, 128, 64, 32)
        if case == "reference_fwd":
            fn = lambda: reference.contextual_attention(f.numpy(), f.numpy(), mask.numpy())  # noqa: E731
            res["seconds"] = _time(fn, 1)
        else:
            layer = contextual_attention if case == "ours_fwd" else loop_contextual_attention
            with torch.no_grad():
                res["seconds"] = _time(lambda: layer(f, f, mask), 5)
    elif case in ("ours_fwdbwd", "loop_fwdbwd"):
        f, mask = _inputs(16, 128, 64, 32)
        f.requires_grad_()
        layer = contextual_attention if case == "ours_fwdbwd" else loop_contextual_attention

        def step():
            y = layer(f, f, mask)
            (y[0] if isinstance(y, tuple) else y).sum().backward()

        res["seconds"] = _time(step, 2)
    elif case == "matmuls":
        g = torch.Generator().manual_seed(0)
        fp = torch.randn(16, 1024, 128 * 9, generator=g)
        w = torch.randn(16, 128 * 9, 1024, generator=g) / 34
        a = torch.softmax(10 * (fp @ w) / 34, -1)
        a = a.masked_fill(a < torch.finfo(a.dtype).tiny, 0)  # no subnormals, as in the layer
        raw = torch.randn(16, 1024, 128 * 16, generator=g)
        res["scores"] = _time(lambda: fp @ w, 5)
        res["paste"] = _time(lambda: a @ raw, 5)
        res["seconds"] = res["scores"] + res["paste"]
    elif case == "big":
        f, mask = _inputs(1, 128, 512, 256)
        g = reference.attention_geometry((512, 512), (512, 512), 3, 1, 2, 3, True)
        res["chunk_size"] = default_chunk_size(g, 1, 4)
        with torch.no_grad():
            t0 = time.perf_counter()
            contextual_attention(f, f, mask)
            res["seconds"] = time.perf_counter() - t0
    else:
        raise ValueError(f"unknown case {case}")
    res["peak_rss_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 2048² case and the NumPy reference")
    parser.add_argument("--case", help="run one case in this process and print its JSON")
    parser.add_argument("--json", help="write all results to this file")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    cases = ["check", "matmuls", "ours_fwd", "loop_fwd", "ours_fwdbwd", "loop_fwdbwd"]
    if not args.quick:
        cases += ["reference_fwd", "big"]
    results = {}
    for case in cases:
        out = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True)
        results[case] = json.loads(out.stdout.strip().splitlines()[-1])
        print(results[case], flush=True)
    meta = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()}  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
    r = results
    print("\n| case | ours | per-sample loop | NumPy reference |\n|---|---|---|---|")
    ref = f"{r['reference_fwd']['seconds']:.2f} s" if "reference_fwd" in r else "n/a"
    ours, loop = r["ours_fwd"]["seconds"], r["loop_fwd"]["seconds"]
    print(f"| forward, B=16 C=128 64×64 | {ours:.3f} s | {loop:.3f} s | {ref} |")
    print(f"| forward+backward | {r['ours_fwdbwd']['seconds']:.3f} s | {r['loop_fwdbwd']['seconds']:.3f} s | |")
    print(f"| peak RSS forward | {r['ours_fwd']['peak_rss_mib']:.0f} MiB | {r['loop_fwd']['peak_rss_mib']:.0f} MiB | |")
    print(f"| peak RSS fwd+bwd | {r['ours_fwdbwd']['peak_rss_mib']:.0f} MiB | "
          f"{r['loop_fwdbwd']['peak_rss_mib']:.0f} MiB | |")  # fmt: skip
    mm = r["matmuls"]
    print(f"\nbare matmuls: scores {mm['scores']:.3f} s + paste {mm['paste']:.3f} s = {mm['seconds']:.3f} s; "
          f"ours forward / matmuls = {ours / mm['seconds']:.2f}")
    if "big" in r:
        print(f"2048² image (512² features, C=128): {r['big']['seconds']:.1f} s, peak RSS "
              f"{r['big']['peak_rss_mib']:.0f} MiB, chunks of {r['big']['chunk_size']} queries")  # fmt: skip


if __name__ == "__main__":
    main()
