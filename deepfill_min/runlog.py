"""The training log with one host-device synchronisation per logging step: losses stay on the device until then.

Every iteration adds its loss terms to a list of device tensors (no ``float()``, no ``.item()``). At a logging step
(and before a checkpoint or a sample picture) `RunLog.flush` concatenates them with one more number, this rank's
request to stop (Ctrl-C), all-reduces that under data parallelism (the logged losses are then the mean over ranks),
and copies the result to the host: the only synchronisation of those iterations. The same numbers decide, on every
rank alike, whether to stop and whether a loss became NaN or infinite (`NonFiniteLoss`, raised before anything is
saved, so the last good checkpoint stays). Rank 0 appends the rows to ``log.csv`` and, when the ``tensorboard``
package is installed, mirrors them there.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
import torch.distributed as dist

from .distributed import World

LOG_KEYS = ("step", "g_loss", "l1", "ae", "g_adv_local", "g_adv_global", "d_loss", "gp", "d_real_local",
            "d_fake_local", "d_real_global", "d_fake_global")  # fmt: skip


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class RunLog:
    """``log.csv`` (and TensorBoard) of a run directory, fed with device tensors and read once per flush."""

    def __init__(self, run_dir: Path, world: World, device: torch.device) -> None:
        self.path, self.world, self.device = Path(run_dir) / "log.csv", world, device
        self.pending: list[tuple[int, list[str], torch.Tensor]] = []
        self._tb = None  # a SummaryWriter once needed, False when tensorboard is not installed

    def add(self, step: int, stats: dict[str, torch.Tensor]) -> None:
        """Keep one iteration's losses, on the device."""
        keys = [k for k in LOG_KEYS if k in stats]
        self.pending.append((step, keys, torch.stack([stats[k].detach().float().reshape(()) for k in keys])))

    def flush(self, stop: bool = False) -> tuple[list[dict], bool]:
        """The rows since the last flush (averaged over ranks) and whether any rank asked to stop: one sync."""
        flag = torch.tensor([float(stop)], device=self.device)
        values = torch.cat([v for _, _, v in self.pending] + [flag])
        if self.world.size > 1:
            dist.all_reduce(values)
            values /= self.world.size
        host = values.cpu().tolist()  # the synchronisation
        rows, pos = [], 0
        for step, keys, vector in self.pending:
            rows.append({"step": step, **dict(zip(keys, host[pos : pos + len(vector)], strict=True))})
            pos += len(vector)
        self.pending = []
        for row in rows:
            bad = [k for k, v in row.items() if not math.isfinite(v)]
            if bad:
                raise NonFiniteLoss(f"non-finite {', '.join(bad)} at step {row['step']}; the last good checkpoint "
                                    f"in {self.path.parent} is kept (try a lower lr, or amp=none)")  # fmt: skip
        if self.world.rank == 0 and rows:
            self.write(rows)
            self._tensorboard(rows)
        return rows, host[-1] > 0

    def write(self, rows: list[dict], mode: str = "a") -> None:
        new = mode == "w" or not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open(mode, newline="") as f:
            writer = csv.DictWriter(f, LOG_KEYS, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def truncate(self, step: int) -> None:
        """Drop the rows after `step` (written after the checkpoint a run resumes from)."""
        if self.world.rank == 0 and self.path.exists():
            with self.path.open() as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= step]
            self.write(rows, mode="w")

    def _tensorboard(self, rows: list[dict]) -> None:
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415  (optional)
            except ImportError:
                self._tb = False
                return
            self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))
        if self._tb:
            for row in rows:
                for key, value in row.items():
                    if key != "step":
                        self._tb.add_scalar(key, value, row["step"])
