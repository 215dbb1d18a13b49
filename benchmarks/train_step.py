"""Training iterations per second, the time spent waiting for data vs computing, and host syncs per iteration.

    python benchmarks/train_step.py --warmup 1 --iters 2                       # CPU, built-in images, 256², batch 16
    python benchmarks/train_step.py --data synthetic                           # no decoding at all: the compute bound
    python benchmarks/train_step.py --data /data/celebahq --workers 8          # a folder (or .flist) of images
    python benchmarks/train_step.py --device cuda --iters 50 [--fp32]          # GPU (bf16 + channels_last by default)
    python benchmarks/train_step.py --size 128 --batch-size 4 --mask-mode shared --warmup 1 --iters 3
                                     # the shape the official training graph was timed at (issue 14's table)

One iteration = 5 critic updates + 1 generator update, each on a fresh batch; the released config otherwise (cnum
32, per-sample holes, 256×256 resized, ``celebahq-256``). ``--warmup`` iterations (default 10: the loader's workers
start, cuDNN picks its algorithms, compilation happens) are not timed. The data wait is the time the training loop
spends inside the loader; compute is the rest (on CUDA, after a final synchronisation). The sync count comes from
a separate, shorter pass that counts scalar reads of tensors (``.item()``, ``bool``, ``tolist``...) per iteration.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from deepfill_min import pipeline
from deepfill_min.config import make_config
from deepfill_min.train import Trainer


class Synthetic:
    """A data set of one fixed random image: no file, no decoding (the compute bound)."""

    def __init__(self, size: int) -> None:
        self.image = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)

    def __len__(self) -> int:
        return 1000

    def load_uint8(self, index: int, generator=None) -> np.ndarray:  # noqa: ANN001
        return self.image


class Reads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="builtin", help="builtin, synthetic, or a folder / .flist of images")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--workers", type=int, default=-1, help="loader workers (-1: automatic)")
    parser.add_argument("--fp32", action="store_true", help="gpu_defaults=false: strict float32 on CUDA")
    parser.add_argument("--amp", default="none", choices=["none", "bf16"], help="bf16 autocast on the CPU too")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--mask-mode", choices=["per_sample", "shared"], help="default: the preset's (per-sample)")
    args = parser.parse_args()
    data = "builtin" if args.data == "synthetic" else args.data
    overrides = [f"data={data}", "val_data=builtin", f"image_size=[{args.size},{args.size}]",
                 f"hole_size=[{args.size // 2},{args.size // 2}]", f"max_delta=[{args.size // 8},{args.size // 8}]",
                 f"batch_size={args.batch_size}", f"device={args.device}", f"amp={args.amp}",
                 f"channels_last={str(args.channels_last).lower()}", f"compile={str(args.compile).lower()}",
                 f"num_workers={args.workers}", f"gpu_defaults={str(not args.fp32).lower()}", "log_every=1000000",
                 "checkpoint_every=1000000"] + ([f"mask_mode={args.mask_mode}"] if args.mask_mode else [])  # fmt: skip
    cfg = make_config("celebahq-256", overrides=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir)
        if args.data == "synthetic":
            batches = pipeline.Batches(Synthetic(args.size), cfg)
            trainer.stream = pipeline.BatchStream(batches, trainer.phases, trainer.stream.loader.num_workers,
                                                  trainer.device.type == "cuda")  # fmt: skip
        waited = [0.0]
        get = trainer.stream.get

        def timed_get(step: int, phase: int) -> dict:
            t = time.perf_counter()
            batch = get(step, phase)
            waited[0] += time.perf_counter() - t
            return batch

        trainer.stream.get = timed_get
        for _ in range(args.warmup):
            trainer.iteration()
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        sync()
        waited[0] = 0.0
        t0 = time.perf_counter()
        for _ in range(args.iters):
            trainer.iteration()
        trainer.log.flush()
        sync()
        total = time.perf_counter() - t0
        reads = Reads()
        with reads:
            for _ in range(2):
                trainer.iteration()
        trainer.log.pending = []
    result = {"device": str(trainer.device), "data": args.data, "workers": trainer.stream.loader.num_workers,
              "amp": trainer.amp, "batch_size": args.batch_size, "size": args.size, "iters": args.iters,
              "mask_mode": cfg.mask_mode,
              "seconds_per_iter": total / args.iters, "iters_per_second": args.iters / total,
              "data_wait_per_iter": waited[0] / args.iters, "compute_per_iter": (total - waited[0]) / args.iters,
              "scalar_reads_per_iter": reads.n / 2, "torch": torch.__version__,
              "python": platform.python_version(), "cpu_threads": torch.get_num_threads()}  # fmt: skip
    if trainer.device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


if __name__ == "__main__":
    main()
