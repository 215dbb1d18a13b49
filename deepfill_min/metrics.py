r"""Inpainting metrics, on images in [0, 1], over a region (the hole, or the whole image).

With $\hat x$ the result, $x$ the truth and $R$ the pixels (× channels) of the region:

* mean L1: $\frac{1}{|R|}\sum_R |\hat x - x|$;
* relative L1 (the paper's "mean ℓ1 loss" as the authors describe it, official issue 146):
  $\sum_R |\hat x - x| / \sum_R |x|$;
* squared relative L2: $\sum_R (\hat x - x)^2 / \sum_R x^2$;
* PSNR: $10 \log_{10}(1 / \mathrm{MSE}_R)$ dB;
* TV: the total variation of the result, $\frac{1}{|R|}\sum_R (|\hat x_{i+1,j} - \hat x_{i,j}| +
  |\hat x_{i,j+1} - \hat x_{i,j}|)$ (lower is smoother; the paper reports it for the result alone);
* SSIM: the usual Gaussian-window SSIM (11×11, σ = 1.5, $C_1 = 0.01^2$, $C_2 = 0.03^2$), its map averaged over $R$.

The authors call their numbers "just reported as a reference": the definitions here are written down so that ours
can be reproduced, not claimed equal to the paper's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

METRICS = ("mean_l1", "relative_l1", "relative_l2_sq", "psnr", "tv", "ssim")


def _gaussian_window(channels: int, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum())[:, None] * (g / g.sum())[None, :]
    return g.expand(channels, 1, size, size).contiguous()


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of (B, C, H, W) images in [0, 1] (zero-padded Gaussian window), same shape as the inputs."""
    x, y = x.double(), y.double()
    c = x.shape[1]
    w = _gaussian_window(c).to(x.device)

    def blur(z):
        return F.conv2d(z, w, padding=5, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def region_metrics(pred: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> dict[str, float]:
    """The metrics above for one image: `pred`, `truth` (1, 3, H, W) in [0, 1], `region` (1, 1, H, W) of 0/1."""
    r = region.expand_as(pred) > 0
    diff = (pred - truth)[r].double()
    ref = truth[r].double()
    mse = (diff**2).mean()
    dy = (pred[..., 1:, :] - pred[..., :-1, :]).abs()
    dx = (pred[..., :, 1:] - pred[..., :, :-1]).abs()
    tv = (dy * r[..., 1:, :]).sum() + (dx * r[..., :, 1:]).sum()
    return {
        "mean_l1": float(diff.abs().mean()),
        "relative_l1": float(diff.abs().sum() / ref.abs().sum().clamp_min(1e-12)),
        "relative_l2_sq": float((diff**2).sum() / (ref**2).sum().clamp_min(1e-12)),
        "psnr": float(10 * torch.log10(1 / mse.clamp_min(1e-12))),
        "tv": float(tv / r.sum()),
        "ssim": float(ssim_map(pred, truth)[r].mean()),
    }
