"""Time per full training iteration (5 critic updates + 1 generator update) and peak memory, at 256×256, batch 16.

    python benchmarks/train_step.py                       # CPU, 2 timed iterations after a warm-up
    python benchmarks/train_step.py --device cuda --iters 20 --amp bf16

The data are the built-in images at 256×256 (no disk I/O to speak of); everything else is the released config
(cnum 32, critics at 256 and 128, per-sample holes). The official code ran about 0.3-0.4 iterations/s on a GTX 1080 Ti.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time

import torch

from deepfill_min.config import make_config
from deepfill_min.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--amp", default="none", choices=["none", "bf16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    overrides = ["data=builtin", "val_data=builtin", f"batch_size={args.batch_size}", f"device={args.device}",
                 f"amp={args.amp}", f"channels_last={str(args.channels_last).lower()}",
                 f"compile={str(args.compile).lower()}"]  # fmt: skip
    cfg = make_config("celebahq-256", overrides=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        trainer.iteration()  # warm-up (and compilation)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(args.iters):
            trainer.iteration()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - t0) / args.iters
    result = {"device": str(trainer.device), "amp": args.amp, "batch_size": args.batch_size, "iters": args.iters,
              "seconds_per_iter": seconds, "iters_per_second": 1 / seconds,
              "peak_rss_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024,
              "torch": torch.__version__, "python": platform.python_version()}  # fmt: skip
    if trainer.device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
