r"""The local and global WGAN critics (spec §5).

Each critic is four `DisConv` layers (5×5, stride 2, TF-SAME, leaky ReLU 0.2) and a linear layer to one score; there
is no normalisation anywhere. The **local** critic sees the crop of the hole's bounding box (128×128 in the released
config) with channels 64, 128, 256, **512**; the **global** critic sees the whole image with 64, 128, 256, **256**.
Their linear layers depend on the input size, so they are built from the configured image and hole sizes:
$\lceil h/16 \rceil \lceil w/16 \rceil$ positions times the last conv's channels (32768 and 65536 at 256×256).

The official flatten is in NHWC order (h, w, c); the critics flatten the same way, so the official dense kernels map
1:1 (``discriminator/dout_local_fc/kernel`` → ``dout_local_fc.weight`` transposed). Fake inputs are the composite
$x_2 m + x(1 - m)$, and no mask channel is added (``GAN_WITH_MASK: False``). 7,072,770 parameters at 256×256.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import DisConv


class CriticConvs(nn.Module):
    """``conv1`` … ``conv4`` of one critic (scope ``discriminator_local`` or ``discriminator_global``)."""

    def __init__(self, cnum: int, multipliers: tuple[int, int, int, int]) -> None:
        super().__init__()
        cin = 3
        for i, mult in enumerate(multipliers, start=1):
            self.add_module(f"conv{i}", DisConv(cin, cnum * mult))
            cin = cnum * mult
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.children():
            x = conv(x)
        # flatten in NHWC order (h, w, c), as tf.contrib.layers.flatten does on the official NHWC tensors
        return x.permute(0, 2, 3, 1).flatten(1)


def _linear(features: int) -> nn.Linear:
    fc = nn.Linear(features, 1)
    nn.init.xavier_uniform_(fc.weight)  # tf.layers.dense defaults: Glorot-uniform kernel, zero bias
    nn.init.zeros_(fc.bias)
    return fc


def _cells(size: tuple[int, int]) -> int:
    # positions left after four stride-2 SAME convs: ceil(h / 16) * ceil(w / 16)
    return -(-size[0] // 16) * -(-size[1] // 16)


class Discriminator(nn.Module):
    """The two critics; `forward(local_x, global_x)` returns their scores, each of shape (B,)."""

    def __init__(self, image_size: tuple[int, int] = (256, 256), hole_size: tuple[int, int] = (128, 128),
                 cnum: int = 64) -> None:  # fmt: skip
        super().__init__()
        for name, size in (("image_size", image_size), ("hole_size", hole_size)):
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"{name} must be (height, width) with positive sizes, got {size!r}")
        if hole_size[0] > image_size[0] or hole_size[1] > image_size[1]:
            raise ValueError(f"hole_size {hole_size} must fit inside image_size {image_size}")
        self.image_size, self.hole_size = tuple(image_size), tuple(hole_size)
        self.discriminator_local = CriticConvs(cnum, (1, 2, 4, 8))
        self.discriminator_global = CriticConvs(cnum, (1, 2, 4, 4))
        self.dout_local_fc = _linear(_cells(hole_size) * self.discriminator_local.out_channels)
        self.dout_global_fc = _linear(_cells(image_size) * self.discriminator_global.out_channels)

    def forward(self, local_x: torch.Tensor, global_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for name, x, size in (("local_x", local_x, self.hole_size), ("global_x", global_x, self.image_size)):
            if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != size:
                raise ValueError(f"{name} must have shape (B, 3, {size[0]}, {size[1]}), got {tuple(x.shape)}")
        return self.local_score(local_x), self.global_score(global_x)

    def local_score(self, x: torch.Tensor) -> torch.Tensor:
        """The local critic alone on box crops, (B,)."""
        return self.dout_local_fc(self.discriminator_local(x)).squeeze(1)

    def global_score(self, x: torch.Tensor) -> torch.Tensor:
        """The global critic alone on whole images, (B,)."""
        return self.dout_global_fc(self.discriminator_global(x)).squeeze(1)
