"""Inpainting large images on the CPU: hole-only vs full computation, a warm process vs the whole command.

Each case runs in a fresh subprocess (so that its peak RSS is its own) with the full-size generator (cnum 32, random
weights: the time does not depend on them) on a random RGB image with one rectangular hole in the middle.

* ``warm``: `deepfill_min.inpaint` in a process that has already run it once (not repeated above 1024², where the
  call is long enough that first-call costs do not matter), hole-only (the default) or ``full=True``;
* ``command``: the whole ``deepfill-min inpaint`` command on PNG files (start-up, reading, writing included), with
  and without ``--full``.

    python benchmarks/inpaint_large.py                 # every case (about ten minutes on 2 cores)
    python benchmarks/inpaint_large.py --quick         # up to 1024²
    python benchmarks/inpaint_large.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WARM = [(512, 96, 128), (512, 256, 256), (1024, 96, 128), (1024, 512, 512), (2048, 96, 128), (2048, 256, 256)]
FULL_SKIP = {(2048, 96, 128)}  # the full computation does not depend on the hole's size: 2048² is timed once
COMMAND = [(1024, 96, 128)]


def _pair(size: int, hh: int, hw: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), bool)
    t, l = (size - hh) // 2, (size - hw) // 2
    mask[t : t + hh, l : l + hw] = True
    return image, mask


def _weights(folder: Path) -> Path:
    import torch  # noqa: PLC0415

    from deepfill_min.generator import Generator  # noqa: PLC0415
    from deepfill_min.weights import save_generator  # noqa: PLC0415

    torch.manual_seed(0)
    return save_generator(Generator().state_dict(), {}, "rgb", folder / "random-cnum32.safetensors")


def run_warm(size: int, hh: int, hw: int, mode: str) -> dict:
    import torch  # noqa: PLC0415

    from deepfill_min.allocator import keep_freed_memory  # noqa: PLC0415
    from deepfill_min.generator import Generator  # noqa: PLC0415
    from deepfill_min.inpaint import inpaint  # noqa: PLC0415

    torch.manual_seed(0)
    keep_freed_memory()  # as load_generator does (DEEPFILL_MIN_KEEP_FREED_MEMORY=0 measures without it)
    generator = Generator().eval().to(memory_format=torch.channels_last)  # as load_generator gives it on the CPU
    image, mask = _pair(size, hh, hw)
    full = mode == "full"
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    inpaint(image, mask, generator, full=full)
    first = time.perf_counter() - t0
    res = {"size": size, "hole": [hh, hw], "mode": mode, "first_call_s": first}
    if size <= 1024:
        t0 = time.perf_counter()
        inpaint(image, mask, generator, full=full)
        res["warm_s"] = time.perf_counter() - t0
    res["peak_rss_growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return res


def run_command(size: int, hh: int, hw: int, folder: Path, weights: Path, extra: list[str]) -> dict:
    from PIL import Image  # noqa: PLC0415

    image, mask = _pair(size, hh, hw)
    Image.fromarray(image).save(folder / "image.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "mask.png")
    cli = Path(sys.executable).with_name("deepfill-min")
    cmd = [str(cli), "inpaint", "--checkpoint", str(weights), "--image", str(folder / "image.png"),
           "--mask", str(folder / "mask.png"), "--out", str(folder / "out.png"), "--official", *extra]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"size": size, "hole": [hh, hw], "command": " ".join(["deepfill-min inpaint --official", *extra]),
            "seconds": seconds, "peak_rss_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="images up to 1024² only")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--case", nargs=4, metavar=("SIZE", "HOLE_H", "HOLE_W", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--command", nargs=5, metavar=("SIZE", "HOLE_H", "HOLE_W", "DIR", "FULL"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_warm(*map(int, args.case[:3]), args.case[3])))
        return
    if args.command:
        size, hh, hw, folder, full = args.command
        folder = Path(folder)
        extra = ["--full"] if full == "1" else []
        print(json.dumps(run_command(int(size), int(hh), int(hw), folder, folder / "random-cnum32.safetensors", extra)))
        return
    results = []

    def sub(*argv: str) -> dict:
        out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(res), flush=True)
        results.append(res)
        return res

    for size, hh, hw in WARM:
        if args.quick and size > 1024:
            continue
        for mode in ("hole-only", "full"):
            if mode == "full" and (size, hh, hw) in FULL_SKIP:
                continue
            sub("--case", str(size), str(hh), str(hw), mode)
    with tempfile.TemporaryDirectory() as tmp:
        _weights(Path(tmp))
        for size, hh, hw in COMMAND:
            for full in ("0", "1"):
                sub("--command", str(size), str(hh), str(hw), tmp, full)
    import torch  # noqa: PLC0415

    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
