r"""The three layers DeepFill v1 is built from, with TensorFlow's padding and resize semantics (spec §2).

* `GenConv` (``gen_conv``): a conv with **TF-SAME zero padding** and ELU. SAME pads $\lfloor p/2 \rfloor$ before and
  the rest after, so a stride-2 3×3 conv on an even input pads (0, 1), not PyTorch's symmetric 1: with symmetric
  padding the official weights are off by up to 0.48 at 256×256 (§2.1).
* `GenDeconv` (``gen_deconv``): nearest ×2 upsampling, then a 3×3 `GenConv`. For exact doubling, align-corners
  nearest equals ``floor(y/2)``, so ``F.interpolate(scale_factor=2)`` is exact here (§2.2, §2.3).
* `DisConv` (``dis_conv``): a 5×5 stride-2 TF-SAME conv and leaky ReLU 0.2 (§5).

Each layer *is* an ``nn.Conv2d`` (``padding=0``; the padding happens in ``forward``), so its parameters are plain
``weight`` and ``bias`` and a layer named ``conv1`` maps 1:1 to the official ``inpaint_net/conv1/{kernel,bias}``.
Initialisation follows ``tf.layers.conv2d``: Glorot-uniform kernels and zero biases (§1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .tf_ops import pad_same

ACTIVATIONS = {
    "elu": F.elu,
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
    "none": lambda x: x,
}


class GenConv(nn.Conv2d):
    """``gen_conv``: TF-SAME zero-padded conv followed by an activation (ELU by default)."""

    def __init__(
        self, cin: int, cout: int, ksize: int = 3, stride: int = 1, rate: int = 1, activation: str = "elu"
    ) -> None:
        super().__init__(cin, cout, ksize, stride=stride, dilation=rate, padding=0)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        # tf.layers defaults: Glorot-uniform kernel, zero bias
        nn.init.xavier_uniform_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, d = self.kernel_size[0], self.stride[0], self.dilation[0]
        return ACTIVATIONS[self.activation](super().forward(pad_same(x, k, s, d)))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation}"


class GenDeconv(GenConv):
    """``gen_deconv``: nearest ×2 upsampling (exact align-corners for doubling), then a 3×3 ELU `GenConv`."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


class DisConv(GenConv):
    """``dis_conv``: 5×5 stride-2 TF-SAME conv (pads 1 before, 2 after on even sizes) and leaky ReLU 0.2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 5, stride=2, activation="leaky_relu")
