"""Time and peak memory of `deepfill_min.inpaint.inpaint` on one large image on the CPU (random weights, cnum 32).

    python benchmarks/inpaint_large.py --size 2048
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from deepfill_min.generator import Generator
from deepfill_min.inpaint import inpaint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = Generator().eval()
    s = args.size
    image = (np.random.default_rng(0).random((s, s, 3)) * 255).astype(np.uint8)
    mask = np.zeros((s, s), bool)
    mask[s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = True
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    inpaint(image, mask, generator)
    seconds = time.perf_counter() - t0
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(json.dumps({"size": s, "seconds": seconds, "peak_rss_growth_mib": peak, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
