"""TF-SAME padding and align-corners nearest resize (spec §2.1, §2.2): the spec's tables and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import reference
from deepfill_min.tf_ops import memory_format, pad_same, patch_rows, resize_nearest_ac, unfold_same


@given(st.integers(1, 300), st.integers(1, 7), st.integers(1, 4), st.integers(1, 16))
def test_same_padding_gives_ceil_output_and_splits_floor_half_before(n, k, s, d):
    before, after = reference.same_padding(n, k, s, d)
    out = (n + before + after - d * (k - 1) - 1) // s + 1
    assert out == -(-n // s)
    assert before == (before + after) // 2 and before >= 0
    # no more padding than needed: with one row less the last window would not fit
    if before + after > 0:
        assert n + before + after - 1 - d * (k - 1) < (out - 1) * s + 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((256, 3, 2), (0, 1)),  # stride-2 3×3 on an even input (conv2_downsample)
        ((128, 3, 2), (0, 1)),
        ((256, 5, 2), (1, 2)),  # the 5×5 stride-2 critic convs
        ((64, 3, 1, 16), (16, 16)),  # dilated stride-1 convs: symmetric d*(k-1)/2
        ((64, 5, 1), (2, 2)),
        ((64, 4, 2), (1, 1)),  # the 4×4 raw patches of contextual attention at rate 2
    ],
)
def test_same_padding_examples_from_the_spec(args, expected):
    assert reference.same_padding(*args) == expected


def _ramp(start: int, stop: int, step: int) -> list[int]:
    return list(range(start, stop + 1, step))


@pytest.mark.parametrize(
    ("n_in", "n_out", "expected"),
    [
        (64, 32, _ramp(0, 30, 2) + _ramp(33, 63, 2)),
        (128, 64, _ramp(0, 62, 2) + _ramp(65, 127, 2)),
        (256, 64, _ramp(0, 40, 4) + _ramp(45, 125, 4) + _ramp(130, 210, 4) + _ramp(215, 255, 4)),
    ],
)
def test_align_corners_downsampling_tables_from_the_spec(n_in, n_out, expected):
    np.testing.assert_array_equal(reference.nearest_ac_indices(n_in, n_out), expected)


def test_align_corners_table_endings_and_upsampling():
    assert list(reference.nearest_ac_indices(170, 85)[-2:]) == [167, 169]
    assert list(reference.nearest_ac_indices(512, 128)[-2:]) == [507, 511]
    for n in (32, 64, 128):  # exact doubling equals floor(y / 2), so F.interpolate is exact there
        np.testing.assert_array_equal(reference.nearest_ac_indices(n, 2 * n), np.arange(2 * n) // 2)


def test_mask_path_256_to_64_to_32_composite_rows():
    rows = reference.nearest_ac_indices(256, 64)[reference.nearest_ac_indices(64, 32)]
    assert list(rows[:9]) == [0, 8, 16, 24, 32, 40, 49, 57, 65]
    i = list(rows).index(121)
    assert list(rows[i : i + 3]) == [121, 134, 142]
    i = list(rows).index(206)
    assert list(rows[i : i + 2]) == [206, 215] and rows[-1] == 255


@given(st.integers(1, 400), st.integers(1, 400))
def test_align_corners_table_is_monotone_in_range_and_keeps_both_ends(n_in, n_out):
    idx = reference.nearest_ac_indices(n_in, n_out)
    assert len(idx) == n_out and idx.min() >= 0 and idx.max() <= n_in - 1
    assert (np.diff(idx) >= 0).all()
    assert idx[0] == 0 and (n_out == 1 or idx[-1] == n_in - 1)


def test_torch_nearest_is_not_align_corners_hence_the_gather():
    x = torch.arange(64.0).view(1, 1, 64, 1)
    ours = resize_nearest_ac(x, (32, 1)).flatten()
    torch_nearest = F.interpolate(x, size=(32, 1), mode="nearest").flatten()
    assert (ours != torch_nearest).sum() == 16  # the second half of the rows differ (33, 35, … vs 32, 34, …)


@given(st.integers(1, 3), st.integers(1, 20), st.integers(1, 20), st.integers(1, 20), st.integers(1, 20))
def test_torch_resize_and_padding_match_the_reference(c, h, w, oh, ow):
    x = np.random.default_rng(h * 100 + w).normal(size=(2, c, h, w))
    np.testing.assert_array_equal(resize_nearest_ac(torch.from_numpy(x), (oh, ow)).numpy(),
                                  reference.resize_nearest_ac(x, (oh, ow)))  # fmt: skip
    for k, s in ((3, 1), (3, 2), (4, 2), (5, 2)):
        np.testing.assert_array_equal(pad_same(torch.from_numpy(x), k, s).numpy(), reference.tf_ops.pad_same(x, k, s))


@given(st.integers(1, 4), st.integers(1, 20), st.integers(1, 20), st.sampled_from([(3, 1), (3, 2), (5, 2), (4, 2)]))
def test_pad_same_without_autograd_equals_f_pad_in_either_memory_format(c, h, w, ks):
    # the no-grad path writes only the border's zeros into a fresh tensor: poison the freed memory it may reuse
    x = torch.randn(2, c, h, w).contiguous(memory_format=torch.channels_last)
    for inp in (x, x.contiguous(), x.clone().requires_grad_()):
        with_grad = pad_same(inp, *ks)
        poison = torch.full_like(with_grad, float("nan"))
        del poison
        with torch.no_grad():
            fast = pad_same(inp, *ks)
        assert torch.equal(fast, with_grad) and torch.equal(fast, F.pad(inp, _tf_same_pads(h, w, *ks)))
        assert fast.stride() == with_grad.stride() or c == 1 or h * w == 1  # the format of x is kept (if it has one)


def _tf_same_pads(h: int, w: int, k: int, s: int) -> tuple[int, int, int, int]:
    (pt, pb), (pl, pr) = reference.tf_ops.same_padding(h, k, s), reference.tf_ops.same_padding(w, k, s)
    return pl, pr, pt, pb


@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 5), st.integers(1, 3))
def test_patch_extraction_matches_explicit_slicing(h, w, k, s):
    x = np.random.default_rng(h * 13 + w).normal(size=(2, 3, h, w))
    patches = reference.extract_patches(x, k, s)
    xpad = reference.tf_ops.pad_same(x, k, s)
    n_w = -(-w // s)
    for idx in range(patches.shape[1]):
        i, j = divmod(idx, n_w)
        np.testing.assert_array_equal(patches[:, idx], xpad[:, :, i * s : i * s + k, j * s : j * s + k])
    torch_patches = unfold_same(torch.from_numpy(x), k, s).numpy().reshape(patches.shape)
    np.testing.assert_array_equal(torch_patches, patches)


@given(st.integers(2, 5), st.integers(1, 12), st.integers(1, 12), st.integers(1, 5), st.integers(1, 3))
def test_channels_last_patch_rows_are_the_patches_laid_out_kkc(c, h, w, k, s):
    x = np.random.default_rng(h * 13 + w).normal(size=(2, c, h, w))
    patches = reference.extract_patches(x, k, s)  # (N, L, C, k, k)
    rows = patch_rows(torch.from_numpy(x).contiguous(memory_format=torch.channels_last), k, s, channels_last=True)
    assert rows.is_contiguous()
    np.testing.assert_array_equal(rows.numpy(), patches.transpose(0, 1, 3, 4, 2).reshape(rows.shape))
    unfolded = patch_rows(torch.from_numpy(x), k, s)  # the default layout is unfold_same's
    np.testing.assert_array_equal(unfolded.numpy(), patches.reshape(unfolded.shape))


@given(st.integers(2, 4), st.integers(1, 20), st.integers(1, 20), st.integers(1, 20), st.integers(1, 20))
def test_nearest_resize_keeps_channels_last(c, h, w, h2, w2):
    x = torch.randn(2, c, h, w)
    last = resize_nearest_ac(x.contiguous(memory_format=torch.channels_last), (h2, w2))
    assert torch.equal(last, resize_nearest_ac(x, (h2, w2)))
    assert memory_format(last) == torch.channels_last or h2 * w2 == 1


def test_bad_sizes_are_value_errors():
    with pytest.raises(ValueError, match="positive"):
        reference.same_padding(0, 3, 1)
    with pytest.raises(ValueError, match="positive sizes"):
        reference.nearest_ac_indices(4, 0)
