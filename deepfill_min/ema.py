r"""The end of training: a cosine decay of the learning rate and an average of the generator's weights.

Neither is in the official code, which trains at a constant 1e-4 and keeps the last weights. Both are off unless a
config asks for them (``lr_decay_iters``, ``ema_decay``); they answer one measurement of the shipped model's runs
(docs/model-card.md): at a constant learning rate the held-out error of consecutive checkpoints moves by about 0.005,
more than most recipe changes, so the last checkpoint is a draw from that noise.

**Cosine decay** over the last $N$ = ``lr_decay_iters`` of $T$ = ``max_iters`` iterations: the update of iteration
$t$ (0-based) uses

$$\eta_t = \eta \cdot \tfrac12\bigl(1 + \cos(\pi \, \tfrac{t - (T - N)}{N})\bigr) \quad \text{for } t \ge T - N,$$

and $\eta$ before; both optimisers (generator and critics) follow it. It is a function of the step and $T$, so a
resumed run gets the same rates as a run straight through; a run resumed with a larger ``max_iters`` moves the
window (one stopped inside its decay goes back up to $\eta$, then decays toward the new end).

**Exponential moving average** (EMA) of the generator's parameters, updated after every generator update with the
decay $\beta$ = ``ema_decay``:

$$\bar\theta_t = \beta\,\bar\theta_{t-1} + (1 - \beta)\,\theta_t, \qquad \bar\theta_0 = \theta_0 .$$

The initial weights keep a share $\beta^t$ (0.25% after 6,000 updates with $\beta = 0.999$). The average is what a
run's samples, held-out report and export use; training, the critics' fakes included, uses the current weights.
"""

from __future__ import annotations

import copy
import math

import torch

from .generator import Generator


def learning_rate(lr: float, step: int, max_iters: int, decay_iters: int) -> float:
    """The learning rate of the update at 0-based iteration `step` (the cosine of the module docstring)."""
    start = max_iters - decay_iters
    if decay_iters == 0 or step < start:
        return lr
    # η_t = η · ½ (1 + cos(π (t − (T − N)) / N))
    return lr * 0.5 * (1 + math.cos(math.pi * (step - start) / decay_iters))


class WeightAverage:
    """An exponential moving average of a generator's parameters, kept in a second generator (`averaged`). The
    generator has no buffers (no normalisation layers), so its parameters are all of its state."""

    def __init__(self, G: Generator, decay: float) -> None:
        self.decay = decay
        self.averaged = copy.deepcopy(G).eval().requires_grad_(False)
        self._source = list(G.parameters())
        self._target = list(self.averaged.parameters())

    @torch.no_grad()
    def update(self) -> None:
        # θ̄ ← β θ̄ + (1 − β) θ, i.e. θ̄ + (1 − β)(θ − θ̄)
        torch._foreach_lerp_(self._target, self._source, 1 - self.decay)


__all__ = ["WeightAverage", "learning_rate"]
