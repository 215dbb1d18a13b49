"""The aten ops a block of code runs: `with AtenOps() as ops: ...`, then ``ops.count[torch.ops.aten.mm]``."""

from __future__ import annotations

from collections import Counter

from torch.utils._python_dispatch import TorchDispatchMode


class AtenOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count: Counter = Counter()  # calls per op (its overload packet, e.g. torch.ops.aten.convolution)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.count[func.overloadpacket] += 1
        return func(*args, **(kwargs or {}))
