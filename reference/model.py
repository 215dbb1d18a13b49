r"""The DeepFill v1 generator in NumPy/CuPy (spec §3): the oracle for `deepfill_min.generator`, end to end.

Weights come in as a dict ``name -> (kernel, bias)`` with kernels in the torch layout (out, in, kh, kw), e.g. from
`deepfill_min.Generator.numpy_params()` or from a converted official checkpoint. The architecture is read
off the official layer names: ``*_downsample`` has stride 2, ``conv{i}_atrous`` dilation $2^{i-6}$, ``*_upsample``
is nearest ×2 and then a conv, ``pmconv6`` is ReLU, ``conv17``/``allconv17`` have no activation, the rest ELU. Channel
counts come from the kernels' shapes. Every conv is TF-SAME zero padded (§2.1); the mask for the attention is resized
with align-corners nearest (§2.2), and the attention is `reference.contextual_attention`.
"""

from __future__ import annotations

import re

from .backend import get_array_module
from .contextual_attention import contextual_attention
from .tf_ops import resize_nearest_ac, same_padding

COARSE = "conv1 conv2_downsample conv3 conv4_downsample conv5 conv6".split()
COARSE_TAIL = ("conv7_atrous conv8_atrous conv9_atrous conv10_atrous conv11 conv12 conv13_upsample conv14 "
               "conv15_upsample conv16 conv17").split()  # fmt: skip
HALLUCINATION = ("xconv1 xconv2_downsample xconv3 xconv4_downsample xconv5 xconv6 xconv7_atrous xconv8_atrous "
                 "xconv9_atrous xconv10_atrous").split()  # fmt: skip
ATTENTION = "pmconv1 pmconv2_downsample pmconv3 pmconv4_downsample pmconv5 pmconv6".split()
ATTENTION_TAIL = ["pmconv9", "pmconv10"]
MERGE = ("allconv11 allconv12 allconv13_upsample allconv14 allconv15_upsample allconv16 allconv17").split()


def conv2d_same(x, kernel, bias, stride: int = 1, dilation: int = 1):
    """``tf.layers.conv2d(padding='SAME')`` on NCHW `x` with a (out, in, k, k) kernel: zero pad, windows, tensordot."""
    xp = get_array_module(x)
    k = kernel.shape[-1]
    span = dilation * (k - 1) + 1
    pt, pb = same_padding(x.shape[2], k, stride, dilation)
    pl, pr = same_padding(x.shape[3], k, stride, dilation)
    xpad = xp.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    # (B, C, H', W', span, span) windows; keep every stride-th window and every dilation-th tap
    win = xp.lib.stride_tricks.sliding_window_view(xpad, (span, span), axis=(2, 3))
    win = win[:, :, ::stride, ::stride, ::dilation, ::dilation]
    # y[b, o, h, w] = Σ_{c,u,v} win[b, c, h, w, u, v] kernel[o, c, u, v] + bias[o]
    y = xp.tensordot(win, kernel, axes=([1, 4, 5], [1, 2, 3]))
    return y.transpose(0, 3, 1, 2) + bias[None, :, None, None]


def _layer(name: str, x, params: dict):
    xp = get_array_module(x)
    kernel, bias = params[name]
    if name.endswith("_upsample"):
        x = x.repeat(2, axis=2).repeat(2, axis=3)  # nearest ×2 (= align-corners for exact doubling, §2.2)
    stride = 2 if name.endswith("_downsample") else 1
    atrous = re.search(r"conv(\d+)_atrous$", name)
    y = conv2d_same(x, kernel, bias, stride, 2 ** (int(atrous.group(1)) - 6) if atrous else 1)
    if name in ("conv17", "allconv17"):
        return y
    if name == "pmconv6":
        return xp.maximum(y, 0)
    # ELU with alpha 1
    return xp.where(y > 0, y, xp.expm1(xp.minimum(y, 0)))


def _run(names: list[str], x, params: dict):
    for name in names:
        x = _layer(name, x, params)
    return x


def generator_forward(params: dict, x, mask, **attention_options):
    """Returns (x_stage1, x_stage2) for `x` (B, 3, H, W) with the hole zeroed and `mask` (1 or B, 1, H, W)."""
    xp = get_array_module(x)
    xin = x
    ones = xp.ones_like(x[:, :1])
    # stage 1: [x, 1, m] -> coarse result; the mask is resized to the 1/4 feature map for the attention
    h = _run(COARSE, xp.concatenate([xin, ones, ones * mask], axis=1), params)
    mask_s = resize_nearest_ac(mask, h.shape[2:])
    x_stage1 = xp.clip(_run(COARSE_TAIL, h, params), -1, 1)
    # stage 2: the coarse result pasted into the hole, read by two branches
    xnow = x_stage1 * mask + xin * (1 - mask)
    xnow = xp.concatenate([xnow, ones, ones * mask], axis=1)
    x_hallu = _run(HALLUCINATION, xnow, params)
    pm = _run(ATTENTION, xnow, params)
    pm, _ = contextual_attention(pm, pm, mask_s, 3, 1, 2, per_sample_mask=mask.shape[0] > 1, return_offsets=False,
                                 **attention_options)  # fmt: skip
    pm = _run(ATTENTION_TAIL, pm, params)
    x_stage2 = xp.clip(_run(MERGE, xp.concatenate([x_hallu, pm], axis=1), params), -1, 1)
    return x_stage1, x_stage2
