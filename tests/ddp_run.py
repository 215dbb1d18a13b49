"""Run ``deepfill-min train`` under torchrun for the data-parallel tests, recording what each rank saw.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_run.py OUT [--nan-at STEP] -- ARGS...

Each rank appends the checksum of every batch it trains on to ``OUT/batches_rank<r>.txt`` (step, phase, sum of the
uint8 images) and, when the command succeeds, saves its models to ``OUT/rank<r>.pt``. ``--nan-at STEP`` makes rank
1 alone report a NaN generator loss at that step, as a diverging replica would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from deepfill_min import cli, train

out, args = Path(sys.argv[1]), sys.argv[2:]
nan_at = None
if args[0] == "--nan-at":
    nan_at, args = int(args[1]), args[2:]
rank = int(os.environ["RANK"])
torch.set_num_threads(1)
trainers = []
stream_get = train.BatchStream.get


def recorded_get(self, step, phase):
    batch = stream_get(self, step, phase)
    with (out / f"batches_rank{rank}.txt").open("a") as f:
        f.write(f"{step} {phase} {int(batch['image'].long().sum())}\n")
    return batch


train.BatchStream.get = recorded_get
g_step = train.Trainer.g_step


def g_step_maybe_nan(self):
    trainers[:1] = [self]
    stats = g_step(self)
    if nan_at is not None and rank == 1 and self.step + 1 == nan_at:
        stats["g_loss"] = stats["g_loss"] * float("nan")
    return stats


train.Trainer.g_step = g_step_maybe_nan
status = cli.main(args[1:] if args[0] == "--" else args)
if status == 0:
    torch.save({"G": trainers[0].G.state_dict(), "D": trainers[0].D.state_dict()}, out / f"rank{rank}.pt")
sys.exit(status)
