"""Generator and critics: sizes and names of the spec (§3, §5, §11), and the generator against the NumPy oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfill_min.discriminator import Discriminator
from deepfill_min.generator import Generator
from reference.model import generator_forward

# §11: the official generator variables, in creation order
OFFICIAL_NAMES = (
    [f"conv{i}" for i in (1, 3, 5, 6, 11, 12, 14, 16, 17)]
    + ["conv2_downsample", "conv4_downsample", "conv13_upsample", "conv15_upsample"]
    + [f"conv{i}_atrous" for i in (7, 8, 9, 10)]
    + [f"xconv{i}" for i in (1, 3, 5, 6)] + ["xconv2_downsample", "xconv4_downsample"]
    + [f"xconv{i}_atrous" for i in (7, 8, 9, 10)]
    + [f"pmconv{i}" for i in (1, 3, 5, 6, 9, 10)] + ["pmconv2_downsample", "pmconv4_downsample"]
    + [f"allconv{i}" for i in (11, 12, 14, 16, 17)] + ["allconv13_upsample", "allconv15_upsample"]
)


@pytest.fixture(scope="module")
def generator64() -> Generator:
    torch.manual_seed(0)
    return Generator().double().eval()


def test_generator_has_the_official_size_and_names(generator64):
    assert sum(p.numel() for p in generator64.parameters()) == 3_601_542
    keys = list(generator64.state_dict())
    assert len(keys) == 84
    assert sorted({k.rsplit(".", 1)[0] for k in keys}) == sorted(OFFICIAL_NAMES)
    order = [k.rsplit(".", 1)[0] for k in keys[::2]]  # creation order: conv*, xconv*, pmconv*, allconv*
    prefixes = [next(p for p in ("allconv", "pmconv", "xconv", "conv") if n.startswith(p)) for n in order]
    assert prefixes == sorted(prefixes, key=["conv", "xconv", "pmconv", "allconv"].index)
    assert generator64.pmconv4_downsample.weight.shape == (128, 64, 3, 3)
    assert generator64.xconv4_downsample.weight.shape == (64, 64, 3, 3)


def test_critics_have_the_official_size():
    d = Discriminator()
    assert sum(p.numel() for p in d.parameters()) == 7_072_770
    assert d.dout_local_fc.in_features == 32768 and d.dout_global_fc.in_features == 65536
    assert d.discriminator_local.conv4.out_channels == 512 and d.discriminator_global.conv4.out_channels == 256
    d_local, d_global = d(torch.zeros(2, 3, 128, 128), torch.zeros(2, 3, 256, 256))
    assert d_local.shape == d_global.shape == (2,)
    small = Discriminator(image_size=(64, 96), hole_size=(32, 40))
    assert small.dout_local_fc.in_features == 2 * 3 * 512 and small.dout_global_fc.in_features == 4 * 6 * 256
    with pytest.raises(ValueError, match="local_x must have shape"):
        small(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 64, 96))
    with pytest.raises(ValueError, match="must fit inside"):
        Discriminator(image_size=(64, 64), hole_size=(128, 128))


@pytest.mark.parametrize(("size", "per_sample"), [((64, 64), False), ((64, 96), True)])
def test_generator_matches_the_numpy_oracle(generator64, size, per_sample):
    rng = np.random.default_rng(0)
    h, w = size
    x = rng.uniform(-1, 1, size=(2, 3, h, w))
    mask = np.zeros((2 if per_sample else 1, 1, h, w))
    mask[0, :, h // 4 : 3 * h // 4, w // 4 : w // 2 + 8] = 1
    mask[-1, :, 8:24, w - 32 : w - 8] = 1
    x = x * (1 - mask)
    out = generator64(torch.from_numpy(x), torch.from_numpy(mask))
    x1, x2 = generator_forward(generator64.numpy_params(), x, mask)
    np.testing.assert_allclose(out.x_stage1.detach().numpy(), x1, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(out.x_stage2.detach().numpy(), x2, rtol=1e-9, atol=1e-10)
    assert np.abs(x2).max() < 1  # the outputs are not saturated, so the comparison is not vacuous


def test_generator_matches_the_numpy_oracle_at_256(generator64):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(1, 3, 256, 256))
    mask = np.zeros((1, 1, 256, 256))
    mask[..., 70:180, 90:200] = 1
    x = x * (1 - mask)
    with torch.no_grad():
        out = generator64(torch.from_numpy(x), torch.from_numpy(mask))
    x1, x2 = generator_forward(generator64.numpy_params(), x, mask)
    np.testing.assert_allclose(out.x_stage1.numpy(), x1, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(out.x_stage2.numpy(), x2, rtol=1e-9, atol=1e-10)


def test_any_multiple_of_8_works_and_other_sizes_are_refused():
    g = Generator(cnum=8)
    out = g(torch.zeros(1, 3, 168, 232), torch.zeros(1, 1, 168, 232), return_offsets=True)
    assert out.x_stage1.shape == out.x_stage2.shape == (1, 3, 168, 232)
    assert out.offsets.shape == (1, 2, 21, 29)
    with pytest.raises(ValueError, match="multiples of 8"):
        g(torch.zeros(1, 3, 100, 64), torch.zeros(1, 1, 100, 64))
    with pytest.raises(ValueError, match=r"mask must have shape \(1 or B, 1, 64, 64\)"):
        g(torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="x must be a float tensor"):
        g(torch.zeros(1, 4, 64, 64), torch.zeros(1, 1, 64, 64))


def test_refinement_gradients_reach_the_coarse_network():
    """The stop_gradient between the stages is commented out in the official code (§3): stage 2 trains stage 1."""
    g = Generator(cnum=8)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    g(torch.rand(2, 3, 32, 32) * (1 - mask), mask).x_stage2.sum().backward()
    assert g.conv17.weight.grad.abs().sum() > 0


def test_the_ablation_baseline_has_no_attention_branch():
    g = Generator(cnum=8, attention=False)
    names = {n for n, _ in g.named_children()}
    assert not any(n.startswith("pmconv") for n in names) and "contextual_attention" not in names
    assert g.allconv11.in_channels == 32  # 4·cnum: the hallucination branch alone
    out = g(torch.zeros(1, 3, 32, 32), torch.zeros(1, 1, 32, 32), return_offsets=True)
    assert out.x_stage2.shape == (1, 3, 32, 32) and out.offsets is None
