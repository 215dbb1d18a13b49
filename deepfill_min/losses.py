r"""DeepFill v1's losses, as the released ``inpaint.yml`` configures them (spec §6).

Notation: $P$ the ground truth in [-1, 1], $m$ the hole mask, $x_1, x_2$ the raw coarse and refined outputs,
crop(·) the hole's bounding box, $SD$ the spatial discount over the box, $\alpha_c = 1.2$ (``COARSE_L1_ALPHA``).

* **Spatially discounted L1** in the box: $\alpha_c\,\overline{|P - x_1| SD} + \overline{|P - x_2| SD}$, means over
  B×h×w×3 (not normalised by $\sum SD$), on the raw outputs (not the composite).
* **Auto-encoder loss** on the known pixels: $[\alpha_c\,\overline{|P - x_1|(1-m)} + \overline{|P - x_2|(1-m)}] /
  \overline{1 - m}$.
* **WGAN**: critic loss $\overline{D(\text{fake})} - \overline{D(\text{real})}$, generator loss
  $-\overline{D(\text{fake})}$, for the local and the global critic separately; fake = the composite.
* **Gradient penalty** on $\hat x = \text{real} + \alpha(\text{fake} - \text{real})$, one $\alpha \sim U[0, 1)$ per
  sample: $\overline{(\lVert \nabla_{\hat x} D(\hat x) \odot m \rVert - 1)^2}$, the norm over **hole pixels only**.
* **Totals**: $L_G = 0.001\,(g_{global} + g_{local}) + 1.2\,L_{1} + 1.2\,L_{AE}$ and
  $L_D = d_{global} + d_{local} + 10\,(gp_{local} + gp_{global})$.

Deviation: the penalty's norm is ``vector_norm(grad * mask)``, the same value as the official
$\sqrt{\sum \nabla^2 m}$ for a binary mask, with a finite gradient where the gradient in the hole is zero.
"""

from __future__ import annotations

import torch


def l1_loss(truth_crop: torch.Tensor, x1_crop: torch.Tensor, x2_crop: torch.Tensor | None, discount: torch.Tensor,
            coarse_alpha: float = 1.2) -> torch.Tensor:  # fmt: skip
    r"""Spatially discounted L1 over the box crops: $\alpha_c\,\overline{|P-x_1|SD} + \overline{|P-x_2|SD}$.

    `x2_crop` None leaves out the refined term (``PRETRAIN_COARSE_NETWORK``).
    """
    loss = coarse_alpha * ((truth_crop - x1_crop).abs() * discount).mean()
    return loss if x2_crop is None else loss + ((truth_crop - x2_crop).abs() * discount).mean()


def ae_loss(truth: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor | None, mask: torch.Tensor,
            coarse_alpha: float = 1.2) -> torch.Tensor:  # fmt: skip
    r"""L1 on the known pixels, normalised by their fraction $\overline{1-m}$ (`x2` None: coarse term only)."""
    known = 1 - mask
    loss = coarse_alpha * ((truth - x1).abs() * known).mean()
    if x2 is not None:
        loss = loss + ((truth - x2).abs() * known).mean()
    return loss / known.mean()


def wgan_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(critic loss, generator loss) = (mean(fake) - mean(real), -mean(fake))."""
    return fake_scores.mean() - real_scores.mean(), -fake_scores.mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor,
                     generator: torch.Generator | None = None,
                     alpha: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    r"""$\overline{(\lVert \nabla D(\hat x) \odot m \rVert - 1)^2}$ at random interpolates, norm over hole pixels.

    `critic` maps a batch to one score per sample; `mask` (1 or B, 1, h, w) selects the hole pixels. The
    interpolation weights $\alpha \sim U[0, 1)$, one per sample, are `alpha` (B,) when given (the training pipeline
    ships them with the batch), else drawn from `generator` on the CPU and moved: the same numbers on any device.
    """
    if alpha is None:
        alpha = torch.rand(real.shape[0], generator=generator)
    alpha = alpha.reshape(-1, 1, 1, 1).to(real)
    interpolates = (real + alpha * (fake - real)).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(interpolates).sum(), interpolates, create_graph=True)
    norm = torch.linalg.vector_norm(grad * mask, dim=(1, 2, 3))
    return ((norm - 1) ** 2).mean()
