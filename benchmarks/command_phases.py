"""Where the time of one ``deepfill-min inpaint`` command goes: start-up, imports, the job, and the exit.

The command is run in fresh processes on a 1024² random photo with a 96×128 hole (the case of issue 14's table),
full-size generator (cnum 32, random weights): the inputs of `inpaint_large.py`'s command case. Inside the process
a timestamp is taken after the imports, at the start and end of the job (reading, inpainting, writing) and when
`console` returns; the parent takes the last one when the process has ended. ``--no-freeze`` runs `main` instead
of `console` (Python's final garbage collection walks every object left, torch's included).

    python benchmarks/command_phases.py [--runs 5] [--no-freeze] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from inpaint_large import _pair, _weights

CHILD = """
import json, sys, time
t0 = float(sys.argv[1])
stamps = {"interpreter": time.time() - t0}
from deepfill_min import cli, pairs
stamps["imports"] = time.time() - t0
job = pairs.inpaint_job
def timed_job(*args, **kwargs):
    stamps["job start"] = time.time() - t0
    job(*args, **kwargs)
    stamps["job end"] = time.time() - t0
pairs.inpaint_job = timed_job
sys.argv = ["deepfill-min", *sys.argv[2:]]
code = cli.main() if NO_FREEZE else cli.console()
stamps["returned"] = time.time() - t0
print(json.dumps(stamps), file=sys.stderr)
"""


def one_run(folder: Path, weights: Path, no_freeze: bool) -> dict[str, float]:
    argv = ["inpaint", "--checkpoint", str(weights), "--image", str(folder / "image.png"), "--mask",
            str(folder / "mask.png"), "--out", str(folder / "out.png"), "--official"]  # fmt: skip
    code = CHILD.replace("NO_FREEZE", str(no_freeze))
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", code, repr(t0), *argv], capture_output=True, text=True,
                          check=True)  # fmt: skip
    end = time.time() - t0
    stamps = json.loads(done.stderr.strip().splitlines()[-1])
    return {"start-up": stamps["interpreter"], "imports": stamps["imports"] - stamps["interpreter"],
            "arguments, weights, planning": stamps["job start"] - stamps["imports"],
            "job (read, inpaint, write)": stamps["job end"] - stamps["job start"],
            "exit": end - stamps["returned"], "total": end}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-freeze", action="store_true", help="run main, not console (the full exit)")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between runs (the VM settles)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    import torch  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = _weights(folder)  # the inputs of benchmarks/inpaint_large.py's command case
        image, mask = _pair(1024, 96, 128)
        Image.fromarray(image).save(folder / "image.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "mask.png")
        runs = []
        for _ in range(args.runs):
            time.sleep(args.pause)
            runs.append(one_run(folder, weights, args.no_freeze))
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for key, value in medians.items():
        print(f"{key:34s} {value:6.3f} s   (runs: {' '.join(f'{r[key]:.2f}' for r in runs)})")
    if args.json:
        info = {"runs": runs, "medians": medians, "no_freeze": args.no_freeze, "torch": torch.__version__,
                "python": platform.python_version(), "machine": platform.machine()}  # fmt: skip
        Path(args.json).write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
