r"""The three layers DeepFill v1 is built from, with TensorFlow's padding and resize semantics (spec §2).

* `GenConv` (``gen_conv``): a conv with **TF-SAME zero padding** and ELU. SAME pads $\lfloor p/2 \rfloor$ before and
  the rest after, so a stride-2 3×3 conv on an even input pads (0, 1), not PyTorch's symmetric 1: with symmetric
  padding the official weights are off by up to 0.48 at 256×256 (§2.1).
* `GenDeconv` (``gen_deconv``): nearest ×2 upsampling, then a 3×3 `GenConv`. For exact doubling, align-corners
  nearest equals ``floor(y/2)``, so ``F.interpolate(scale_factor=2)`` is exact here (§2.2, §2.3); the forward
  computes the same function sub-pixel, without upsampling (below).
* `DisConv` (``dis_conv``): a 5×5 stride-2 TF-SAME conv and leaky ReLU 0.2 (§5).

Each layer *is* an ``nn.Conv2d``, so its parameters are plain ``weight`` and ``bias`` and a layer named ``conv1``
maps 1:1 to the official ``inpaint_net/conv1/{kernel,bias}``. Initialisation follows ``tf.layers.conv2d``:
Glorot-uniform kernels and zero biases (§1).

Two rewrites compute the same function faster (equal to float rounding; `tests/test_layers.py`):

* **Padding inside the conv.** At stride 1, SAME padding is symmetric, $d(k-1)/2$ on each side, so the conv pads
  itself (``padding=`` of ``nn.Conv2d``) and no padded copy of the input is made. Stride-2 layers keep the explicit
  asymmetric pad.
* **Sub-pixel upsampling conv.** A 3×3 conv after nearest ×2 upsampling sees, at each of the four output phases
  $(a, b) \in \{0, 1\}^2$, a 2×2 window of the *low-resolution* input whose taps are sums of the 3×3 kernel's taps:
  along one axis the even outputs read rows $(i-1, i)$ with $(w_0, w_1 + w_2)$, the odd outputs rows $(i, i+1)$ with
  $(w_0 + w_1, w_2)$. One 2×2 conv with $4 C_{out}$ channels computes all four phases at 16/36 of the multiply-adds,
  without building the upsampled tensor; the phases are then interleaved.

And one rewrite computes the same gradients with less work: the critics' **leaky ReLU keeps its slope out of the
graph**. The gradient penalty differentiates the critic's input gradient $\nabla_x D = \ldots W^\top \sigma'(z)
\ldots$ once more. $\sigma'(z)$ is 1 or 0.2, piecewise constant, so $\partial \sigma'(z) / \partial z = 0$; PyTorch's
built-in backward still records it as a function of $z$ and sends that zero back through the critic's forward pass
(extra convolution backwards per critic and update). `LeakyReLU` applies $\sigma'(z)$ read from the detached result:
the same penalty gradient (bit for bit in the tests), the zero path gone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .tf_ops import memory_format, pad_same


class LeakyReLU(torch.autograd.Function):
    r"""Leaky ReLU 0.2 in place, whose backward $g\,\sigma'(z)$ is differentiable in $g$ only (module docstring)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        y = F.leaky_relu(z, 0.2, inplace=True)
        ctx.mark_dirty(z)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (y,) = ctx.saved_tensors
        # sign(y) = sign(z): the slope read from the result, which is detached, so no gradient flows into z
        return torch.ops.aten.leaky_relu_backward(g, y.detach(), 0.2, True)


# applied in place to a conv's fresh output (the conv's backward does not need its output; these activations' own
# backward reads their result)
ACTIVATIONS = {
    "elu": lambda x: F.elu(x, inplace=True),
    "relu": lambda x: F.relu(x, inplace=True),
    "leaky_relu": LeakyReLU.apply,
    "none": lambda x: x,
}


class GenConv(nn.Conv2d):
    """``gen_conv``: TF-SAME zero-padded conv followed by an activation (ELU by default)."""

    def __init__(
        self, cin: int, cout: int, ksize: int = 3, stride: int = 1, rate: int = 1, activation: str = "elu"
    ) -> None:
        # stride 1, odd k: TF-SAME pads d(k-1)/2 on both sides, which the conv does itself
        padding = rate * (ksize - 1) // 2 if stride == 1 and ksize % 2 else 0
        super().__init__(cin, cout, ksize, stride=stride, dilation=rate, padding=padding)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        # tf.layers defaults: Glorot-uniform kernel, zero bias
        nn.init.xavier_uniform_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding[0] == 0:
            x = pad_same(x, self.kernel_size[0], self.stride[0], self.dilation[0])
        return ACTIVATIONS[self.activation](super().forward(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation}"


# rows of the 2-tap kernels of the even (a = 0) and odd (a = 1) output phases, as sums of the 3 taps
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


class GenDeconv(GenConv):
    """``gen_deconv``: nearest ×2 upsampling (exact align-corners for doubling), then a 3×3 ELU `GenConv`.

    Computed sub-pixel (module docstring): the parameters are the 3×3 conv's, the forward never upsamples.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        cout = self.out_channels
        taps = _PHASE_TAPS.to(self.weight)
        # $K_{ab} = M_a\, w\, M_b^\top$ for each output channel: (2, 2, Cout, Cin, 2, 2) -> (4·Cout, Cin, 2, 2), in
        # the weights' precision (under autocast the conv then rounds the summed taps once, not the sum's terms)
        with torch.autocast(x.device.type, enabled=False):
            k = torch.einsum("aiu,ocuv,bjv->abocij", taps, self.weight, taps).reshape(4 * cout, -1, 2, 2)
        # a 2×2 conv over the input padded by one: phase (a, b) of output (2i + a, 2j + b) is at (i + a, j + b)
        y = ACTIVATIONS[self.activation](F.conv2d(x, k, self.bias.repeat(4), padding=1))
        out = torch.empty(B, cout, 2 * H, 2 * W, dtype=y.dtype, device=y.device, memory_format=memory_format(x))
        phases = out.view(B, cout, H, 2, W, 2)  # a view in either memory format
        for a in range(2):
            for c in range(2):
                p = 2 * a + c
                phases[:, :, :, a, :, c] = y[:, p * cout : (p + 1) * cout, a : a + H, c : c + W]
        return out


class DisConv(GenConv):
    """``dis_conv``: 5×5 stride-2 TF-SAME conv (pads 1 before, 2 after on even sizes) and leaky ReLU 0.2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 5, stride=2, activation="leaky_relu")
