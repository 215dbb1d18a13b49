"""Wall time and committed size of each tutorial notebook, executed top to bottom as CI executes it.

    python benchmarks/tutorial.py            # every notebook of tutorial/, in reading order, from a clean runs/
    python benchmarks/tutorial.py 06_training

Each notebook runs in a fresh kernel with tutorial/ as its working directory (as nbmake runs it); the executed copy
is thrown away, so the committed notebooks are not touched. tutorial/runs/ (the scratch space the notebooks write)
is deleted first, so notebook 7 trains its baseline run as it does in a clean CI checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorial"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook stems (default: all, in order)")
    args = parser.parse_args()
    paths = sorted(TUTORIAL.glob("*.ipynb"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names]
        if len(paths) != len(args.names):
            raise SystemExit(f"names must be notebook stems of tutorial/, got {args.names}")
    shutil.rmtree(TUTORIAL / "runs", ignore_errors=True)
    rows = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(TUTORIAL)}})
        client.execute()
        rows.append({"notebook": path.name, "seconds": round(time.perf_counter() - start, 1),
                     "committed_MB": round(path.stat().st_size / 1e6, 2)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    total = round(sum(r["seconds"] for r in rows), 1)
    print(json.dumps({"total_seconds": total, "cpus": os.cpu_count(), "python": platform.python_version(),
                      "torch": torch.__version__}))  # fmt: skip


if __name__ == "__main__":
    main()
