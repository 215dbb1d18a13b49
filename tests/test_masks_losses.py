"""Masks (§8), spatial discount and losses (§6): closed forms and the official quirks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from deepfill_min import losses
from deepfill_min.masks import bbox2mask, brush_stroke_mask, local_patch, random_bbox, spatial_discount


@given(st.integers(0, 2**31), st.sampled_from([1, 4]))
def test_boxes_and_holes_follow_the_official_ranges(seed, n):
    g = torch.Generator().manual_seed(seed)
    boxes = random_bbox(n, (256, 256), (128, 128), generator=g)
    assert boxes.shape == (n, 4) and (boxes[:, :2] >= 0).all() and (boxes[:, :2] <= 127).all()
    masks = bbox2mask(boxes, (256, 256), (32, 32), generator=g)
    for mask, (t, l, h, w) in zip(masks, boxes.tolist(), strict=True):
        rows, cols = mask[0].nonzero(as_tuple=True)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 96 <= height <= 128 and height % 2 == 0 and 96 <= width <= 128 and width % 2 == 0
        assert mask[0].sum() == height * width  # a filled rectangle
        assert rows.min() - t == t + h - 1 - rows.max() and cols.min() - l == l + w - 1 - cols.max()  # centred


def test_boxes_cover_the_whole_range_and_are_reproducible():
    boxes = random_bbox(4000, (256, 256), (128, 128), generator=torch.Generator().manual_seed(0))
    assert boxes[:, 0].min() == 0 and boxes[:, 0].max() == 127  # TF's exclusive maximum: t in {0, ..., 127}
    again = random_bbox(4000, (256, 256), (128, 128), generator=torch.Generator().manual_seed(0))
    assert torch.equal(boxes, again)
    with pytest.raises(ValueError, match="does not fit"):
        random_bbox(1, (64, 64), (128, 128))


def test_spatial_discount_matches_the_spec():
    sd = spatial_discount((128, 128), 0.9)[0, 0].double()
    assert sd[0, 0] == 1 and sd[0, 50] == 1  # the box border weighs 1
    assert torch.isclose(sd[127, 64], torch.tensor(0.9, dtype=torch.float64))  # asymmetric: 128 - i, not 127 - i
    assert torch.isclose(sd[64, 64], torch.tensor(0.9**64, dtype=torch.float64), rtol=1e-6)
    assert abs(sd.mean().item() - 0.2529) < 5e-4


def test_brush_strokes_are_binary_reproducible_and_sized():
    a = brush_stroke_mask(3, (128, 96), generator=torch.Generator().manual_seed(1))
    b = brush_stroke_mask(3, (128, 96), generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 1, 128, 96) and torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and 0 < a.mean() < 0.9


def test_local_patch_follows_each_samples_box():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    boxes = torch.tensor([[0, 1, 4, 4], [3, 2, 4, 4]])
    crops = local_patch(x, boxes)
    assert torch.equal(crops[0], x[0, :, 0:4, 1:5]) and torch.equal(crops[1], x[1, :, 3:7, 2:6])
    assert torch.equal(local_patch(x, boxes[:1]), x[:, :, 0:4, 1:5])


def test_l1_and_ae_losses_closed_forms():
    truth = torch.zeros(2, 3, 8, 8)
    x1, x2 = torch.full_like(truth, 0.5), torch.full_like(truth, 0.25)
    sd = torch.full((1, 1, 8, 8), 0.5)
    assert torch.isclose(losses.l1_loss(truth, x1, x2, sd), torch.tensor(1.2 * 0.25 + 0.125))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1  # half the pixels are the hole: the AE loss is normalised by the known fraction 1/2
    assert torch.isclose(losses.ae_loss(truth, x1, x2, mask), torch.tensor(1.2 * 0.5 + 0.25))


def test_wgan_losses():
    d, g = losses.wgan_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0]))
    assert d == -1.0 - 2.0 and g == 1.0


def test_gradient_penalty_counts_hole_pixels_only_and_draws_alpha_per_sample():
    weight = torch.randn(1, 3, 4, 4)

    def critic(x):  # linear: its input gradient is `weight` everywhere
        return (x * weight).sum((1, 2, 3))

    real, fake = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1:3, 1:3] = 1
    gp = losses.gradient_penalty(critic, real, fake, mask)
    expected = (torch.linalg.vector_norm(weight * mask) - 1) ** 2
    assert torch.isclose(gp, expected)
    # a zero gradient in the hole gives a finite penalty gradient (vector_norm's backward is 0 at 0)
    w = torch.zeros(1, 3, 4, 4, requires_grad=True)
    losses.gradient_penalty(lambda x: (x * w).sum((1, 2, 3)), real, fake, mask).backward()
    assert torch.isfinite(w.grad).all()
