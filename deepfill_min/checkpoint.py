"""Checkpoints: one dict per file, written atomically, the last K kept.

A checkpoint holds everything a run needs to continue exactly: generator, critics, both optimisers, the step, the
random-number states, the resolved config and the package version. It is written to a temporary file in the same
folder and renamed over the target (``os.replace`` is atomic), so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

PATTERN = re.compile(r"^ckpt_(\d{8})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"ckpt_{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if PATTERN.match(p.name))


def save_atomic(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict, run_dir: str | Path, keep: int) -> Path:
    """Write ``ckpt_<step>.pt`` atomically and delete all but the newest `keep` checkpoints."""
    path = checkpoint_path(Path(run_dir), state["step"])
    save_atomic(state, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`, with a clear error for a missing or foreign file."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise FileNotFoundError(f"no checkpoint (ckpt_*.pt) in {path}")
        path = found[-1]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001  (pickle and zip errors of every kind)
        raise ValueError(f"{path} is not a deepfill-min checkpoint: {err}") from None
    if not isinstance(state, dict) or "generator" not in state or "config" not in state:
        raise ValueError(f"{path} is not a deepfill-min checkpoint (expected a dict with generator and config)")
    return state
