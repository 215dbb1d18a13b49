r"""The DeepFill v1 generator: a coarse network, then a refinement network with contextual attention (spec §3).

Input: the image with the hole zeroed, $x_{in} = x \odot (1 - m)$ in [-1, 1], and the mask $m$ (1 = hole). Both stages
read five channels, $[x, 1, m]$.

* **Stage 1 (coarse)**: an encoder down to 1/4 resolution, four dilated convs (rates 2, 4, 8, 16) for a large
  receptive field, and a decoder back up: $x_1 = \mathrm{clip}(\text{conv17}, -1, 1)$.
* **Stage 2 (refinement)**: the coarse result is pasted into the hole, $\tilde x = x_1 m + x_{in}(1 - m)$, and read by
  two parallel encoders: the *hallucination* branch (dilated convs, like stage 1) and the *attention* branch, whose
  ReLU features (pmconv6) attend to themselves through `contextual_attention` with the mask resized to 1/4
  (align-corners nearest). The branches are concatenated, hallucination channels first, and decoded:
  $x_2 = \mathrm{clip}(\text{allconv17}, -1, 1)$.

Layer names and creation order are the official ones (conv1 … conv17, xconv1 …, pmconv1 … pmconv6, pmconv9,
pmconv10, allconv11 … allconv17: there is no pmconv7/8), so ``state_dict`` keys map 1:1 to the checkpoint's
``inpaint_net/<name>/kernel``. With cnum = 32 the generator has 3,601,542 parameters, at any image size.

Deviations from the official code: a mask with batch B > 1 is used per sample (the official graph takes mask[0]);
pass a batch-1 mask for the official behaviour. ``attention=False`` builds the paper's baseline for the ablation:
the refinement network without the attention branch (allconv11 then reads 4·cnum channels).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .allocator import sized_by_image
from .attention import ContextualAttention
from .layers import GenConv, GenDeconv
from .tf_ops import resize_nearest_ac


def _layer_table(c: int) -> list[tuple]:
    """(name, cin, cout, ksize, stride, rate, activation) in the official creation order; ksize 0 = gen_deconv."""
    dilated = [(f"{{}}{i}_atrous", 4 * c, 4 * c, 3, 1, 2 ** (i - 6), "elu") for i in (7, 8, 9, 10)]
    return [
        # stage 1: coarse network
        ("conv1", 5, c, 5, 1, 1, "elu"), ("conv2_downsample", c, 2 * c, 3, 2, 1, "elu"),
        ("conv3", 2 * c, 2 * c, 3, 1, 1, "elu"), ("conv4_downsample", 2 * c, 4 * c, 3, 2, 1, "elu"),
        ("conv5", 4 * c, 4 * c, 3, 1, 1, "elu"), ("conv6", 4 * c, 4 * c, 3, 1, 1, "elu"),
        *[(n.format("conv"), *rest) for n, *rest in dilated],
        ("conv11", 4 * c, 4 * c, 3, 1, 1, "elu"), ("conv12", 4 * c, 4 * c, 3, 1, 1, "elu"),
        ("conv13_upsample", 4 * c, 2 * c, 0, 1, 1, "elu"), ("conv14", 2 * c, 2 * c, 3, 1, 1, "elu"),
        ("conv15_upsample", 2 * c, c, 0, 1, 1, "elu"), ("conv16", c, c // 2, 3, 1, 1, "elu"),
        ("conv17", c // 2, 3, 3, 1, 1, "none"),
        # stage 2, hallucination branch
        ("xconv1", 5, c, 5, 1, 1, "elu"), ("xconv2_downsample", c, c, 3, 2, 1, "elu"),
        ("xconv3", c, 2 * c, 3, 1, 1, "elu"), ("xconv4_downsample", 2 * c, 2 * c, 3, 2, 1, "elu"),
        ("xconv5", 2 * c, 4 * c, 3, 1, 1, "elu"), ("xconv6", 4 * c, 4 * c, 3, 1, 1, "elu"),
        *[(n.format("xconv"), *rest) for n, *rest in dilated],
        # stage 2, attention branch (pmconv6 is ReLU; contextual attention sits between pmconv6 and pmconv9)
        ("pmconv1", 5, c, 5, 1, 1, "elu"), ("pmconv2_downsample", c, c, 3, 2, 1, "elu"),
        ("pmconv3", c, 2 * c, 3, 1, 1, "elu"), ("pmconv4_downsample", 2 * c, 4 * c, 3, 2, 1, "elu"),
        ("pmconv5", 4 * c, 4 * c, 3, 1, 1, "elu"), ("pmconv6", 4 * c, 4 * c, 3, 1, 1, "relu"),
        ("pmconv9", 4 * c, 4 * c, 3, 1, 1, "elu"), ("pmconv10", 4 * c, 4 * c, 3, 1, 1, "elu"),
        # stage 2, after the merge (hallucination channels first)
        ("allconv11", 8 * c, 4 * c, 3, 1, 1, "elu"), ("allconv12", 4 * c, 4 * c, 3, 1, 1, "elu"),
        ("allconv13_upsample", 4 * c, 2 * c, 0, 1, 1, "elu"), ("allconv14", 2 * c, 2 * c, 3, 1, 1, "elu"),
        ("allconv15_upsample", 2 * c, c, 0, 1, 1, "elu"), ("allconv16", c, c // 2, 3, 1, 1, "elu"),
        ("allconv17", c // 2, 3, 3, 1, 1, "none"),
    ]  # fmt: skip


class GeneratorOutput(NamedTuple):
    x_stage1: torch.Tensor  # coarse result, (B, 3, H, W) in [-1, 1]
    x_stage2: torch.Tensor  # refined result
    offsets: torch.Tensor | None  # attention offsets on the 1/8 grid, (B, 2, H/8, W/8), when asked


class Generator(nn.Module):
    """``InpaintCAModel.build_inpaint_net``: `forward(x, mask)` returns `GeneratorOutput`."""

    def __init__(self, cnum: int = 32, attention: bool = True, **attention_options) -> None:
        super().__init__()
        if cnum < 2 or cnum % 2:
            raise ValueError(f"cnum must be an even integer >= 2, got {cnum!r}")
        self.attention = attention
        for name, cin, cout, k, s, d, act in _layer_table(cnum):
            if not attention and name.startswith("pmconv"):
                continue  # the paper's baseline: no attention branch, the merge reads the hallucination branch only
            if not attention and name == "allconv11":
                cin = 4 * cnum
            layer = GenDeconv(cin, cout) if k == 0 else GenConv(cin, cout, k, s, d, act)
            self.add_module(name, layer)
        if attention:
            self.contextual_attention = ContextualAttention(ksize=3, stride=1, rate=2, **attention_options)

    def stack(self, first: str, last: str) -> list[GenConv]:
        """The layers from `first` to `last` (inclusive) in creation order."""
        names = list(self._modules)
        return [self._modules[name] for name in names[names.index(first) : names.index(last) + 1]]

    def _run(self, x: torch.Tensor, first: str, last: str) -> torch.Tensor:
        """Apply the layers from `first` to `last` (inclusive) in creation order."""
        for layer in self.stack(first, last):
            x = layer(x)
        return x

    def numpy_params(self) -> dict[str, tuple]:
        """Every conv's (kernel, bias) as NumPy arrays by official name: the weights `reference.model` evaluates."""
        return {name: (m.weight.detach().cpu().numpy(), m.bias.detach().cpu().numpy())
                for name, m in self.named_children() if isinstance(m, GenConv)}  # fmt: skip

    @sized_by_image  # the allocator's policy for the image's size (`allocator`)
    def forward(self, x: torch.Tensor, mask: torch.Tensor, return_offsets: bool = False) -> GeneratorOutput:
        """`x`: (B, 3, H, W) image with the hole zeroed, in [-1, 1]; `mask`: (1 or B, 1, H, W), 1 = hole."""
        check_inputs(x, mask)
        xin = x
        ones = torch.ones_like(x[:, :1])
        # stage 1: coarse
        x_stage1 = self._run(torch.cat([xin, ones, ones * mask], 1), "conv1", "conv17").clamp(-1, 1)
        # stage 2: paste the coarse result into the hole; gradients flow back into stage 1
        x_stage2, offsets = self.refine(x_stage1 * mask + xin * (1 - mask), mask, return_offsets)
        return GeneratorOutput(x_stage1, x_stage2, offsets)

    def refine(self, x: torch.Tensor, mask: torch.Tensor,
               return_offsets: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """Stage 2 alone: (refined image, offsets) for `x` whose hole holds a coarse guess (`forward` gives it the
        coarse stage's result; a probe may give it anything else)."""
        ones = torch.ones_like(x[:, :1])
        xnow = torch.cat([x, ones, ones * mask], 1)
        x_hallu = self._run(xnow, "xconv1", "xconv10_atrous")
        offsets = None
        if self.attention:
            pm = self._run(xnow, "pmconv1", "pmconv6")
            mask_s = resize_nearest_ac(mask, tuple(pm.shape[-2:]))  # resize_mask_like: the mask at 1/4 resolution
            pm, offsets = self.contextual_attention(pm, pm, mask_s, per_sample_mask=mask.shape[0] > 1,
                                                    return_offsets=return_offsets)  # fmt: skip
            x_hallu = torch.cat([x_hallu, self._run(pm, "pmconv9", "pmconv10")], 1)
        return self._run(x_hallu, "allconv11", "allconv17").clamp(-1, 1), offsets


def check_inputs(x: torch.Tensor, mask: torch.Tensor) -> None:
    """Shapes the generator needs; a ValueError names the argument and the rule."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor of shape (B, 3, H, W), got {getattr(x, 'shape', type(x))}")
    H, W = x.shape[-2:]
    if H % 8 or W % 8:
        raise ValueError(f"image height and width must be multiples of 8 (two stride-2 convs and the attention's "
                         f"1/2 downsampling), got {H}x{W}; pad or crop the image")  # fmt: skip
    if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != (H, W):
        raise ValueError(f"mask must have shape (1 or B, 1, {H}, {W}), got {getattr(mask, 'shape', type(mask))}")
    if mask.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"mask batch must be 1 or {x.shape[0]} (the batch of x), got {mask.shape[0]}")
