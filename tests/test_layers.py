"""The layers' fast forms equal their definitions (spec §2.1, §2.3): padding inside the conv, sub-pixel upsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from aten_ops import AtenOps
from hypothesis import given
from hypothesis import strategies as st

from deepfill_min.layers import ACTIVATIONS, GenConv, GenDeconv
from deepfill_min.tf_ops import pad_same


def _definition(layer: GenConv, x: torch.Tensor) -> torch.Tensor:
    """TF-SAME pad, then a padding-free conv: the layer as the official code defines it."""
    k, s, d = layer.kernel_size[0], layer.stride[0], layer.dilation[0]
    y = F.conv2d(pad_same(x, k, s, d), layer.weight, layer.bias, stride=s, dilation=d)
    return ACTIVATIONS[layer.activation](y)


@given(st.integers(1, 12), st.integers(1, 12), st.sampled_from([1, 3, 5]), st.integers(1, 2), st.integers(1, 4),
       st.integers(0, 2**16))  # fmt: skip
def test_genconv_equals_explicit_same_padding(h, w, k, s, d, seed):
    torch.manual_seed(seed)
    layer = GenConv(3, 4, k, s, d).double()
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    y, ref = layer(x), _definition(layer, x)
    assert y.shape == ref.shape == (2, 4, -(-h // s), -(-w // s))
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    # and the gradients with respect to the input and the kernel
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, layer.weight), g)
    refs = torch.autograd.grad(ref, (x, layer.weight), g)
    for a, b in zip(grads, refs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**16))
def test_gendeconv_equals_upsample_then_conv(h, w, cin, cout, seed):
    torch.manual_seed(seed)
    layer = GenDeconv(cin, cout).double()
    torch.nn.init.normal_(layer.bias)  # nonzero biases: each phase must get its bias exactly once
    x = torch.randn(2, cin, h, w, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    ref = _definition(layer, F.interpolate(x, scale_factor=2, mode="nearest"))
    assert y.shape == (2, cout, 2 * h, 2 * w)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, (x, layer.weight, layer.bias), g),
                    torch.autograd.grad(ref, (x, layer.weight, layer.bias), g), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_gendeconv_float32_and_channels_last_stay_close():
    torch.manual_seed(0)
    layer = GenDeconv(16, 8)
    x = torch.randn(1, 16, 20, 12)
    ref = _definition(layer, F.interpolate(x, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
    cl = layer.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref, rtol=1e-5, atol=1e-5)


def test_in_place_activations_have_second_derivatives():
    """The critics' gradient penalty differentiates through their leaky ReLU twice; the in-place forms allow it."""
    torch.manual_seed(0)
    for act in ("elu", "leaky_relu", "relu"):
        layer = GenConv(2, 3, 3, 2, activation=act).double()
        x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(layer, (x,))


def _penalty_grads(monkeypatch, activation) -> tuple[list[torch.Tensor], int]:  # noqa: ANN001
    """The critic weights' gradient of a gradient penalty, and how many convolution backwards computed it."""
    from deepfill_min.discriminator import Discriminator
    from deepfill_min.losses import gradient_penalty

    monkeypatch.setitem(ACTIVATIONS, "leaky_relu", activation)
    torch.manual_seed(0)
    D = Discriminator((32, 32), (16, 16), cnum=4).double()
    real, fake = torch.randn(2, 2, 3, 32, 32, dtype=torch.float64)
    mask = (torch.rand(1, 1, 32, 32) > 0.5).double()
    gp = gradient_penalty(D.global_score, real, fake, mask, alpha=torch.tensor([0.3, 0.8]))
    with AtenOps() as ops:
        params = list(D.parameters())
        grads = torch.autograd.grad(gp, params, allow_unused=True)
    # a parameter the penalty does not depend on (a bias only moves the slopes' switch points) gets no gradient
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    return grads, ops.count[torch.ops.aten.convolution_backward]


def test_critic_leaky_relu_gives_the_builtin_penalty_gradient_without_the_zero_path(monkeypatch):
    """The penalty's gradient with the slope kept out of the graph equals the built-in activation's, for less work."""
    ours, n_ours = _penalty_grads(monkeypatch, ACTIVATIONS["leaky_relu"])
    builtin, n_builtin = _penalty_grads(monkeypatch, lambda x: F.leaky_relu(x, 0.2))
    for a, b in zip(ours, builtin, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert n_ours < n_builtin
