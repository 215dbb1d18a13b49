"""The flow colour wheel (spec §4.7): its colours, its saturation rule and the official quirks."""

from __future__ import annotations

import numpy as np
import pytest

import reference


def test_wheel_has_55_colours_and_pure_hues_at_segment_starts():
    wheel = reference.make_color_wheel()
    assert wheel.shape == (55, 3) and wheel.min() >= 0 and wheel.max() <= 255
    starts = np.cumsum((0,) + reference.flow.WHEEL_STEPS[:-1])
    pure = [(255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 0, 255), (255, 0, 255)]
    np.testing.assert_array_equal(wheel[starts], pure)
    # neighbouring colours differ in one channel by at most one step of a 4-step segment
    assert np.abs(np.diff(wheel, axis=0)).max() <= 64


def test_zero_flow_is_white_and_full_length_is_the_pure_hue():
    flow = np.zeros((1, 2, 2, 2))
    flow[0, 0, 1, 1] = 5.0  # u = +5, v = 0: the largest length, hue index 0 (red)
    img = reference.flow_to_image(flow)
    assert img.dtype == np.uint8 and img.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(img[0, :, 0, 0], [255, 255, 255])
    np.testing.assert_array_equal(img[0, :, 1, 1], [255, 0, 0])


def test_half_length_is_half_saturated():
    flow = np.zeros((1, 2, 1, 2))
    flow[0, 0, 0] = [4.0, 2.0]
    img = reference.flow_to_image(flow).astype(int)
    # 1 - rad * (1 - col): red at rad 1/2 is (255, 127.5, 127.5) -> floor
    np.testing.assert_array_equal(img[0, :, 0, 1], [255, 127, 127])


def test_largest_length_accumulates_over_the_batch_unless_asked_not_to():
    flow = np.zeros((2, 2, 1, 2))
    flow[0, 0, 0, 0] = 10.0
    flow[1, 0, 0, 0] = 5.0
    official = reference.flow_to_image(flow)
    per_image = reference.flow_to_image(flow, accumulate=False)
    np.testing.assert_array_equal(per_image[1, :, 0, 0], [255, 0, 0])  # own maximum: full colour
    np.testing.assert_array_equal(official[1, :, 0, 0], [255, 127, 127])  # image 0's maximum: half saturated


def test_unknown_and_nan_flow():
    flow = np.zeros((1, 2, 1, 3))
    flow[0, :, 0, 0] = np.nan
    flow[0, 0, 0, 1] = 1e8
    flow[0, 0, 0, 2] = 1.0
    img = reference.flow_to_image(flow)
    np.testing.assert_array_equal(img[0, :, 0, 0], [0, 0, 0])  # NaN: black
    np.testing.assert_array_equal(img[0, :, 0, 1], [255, 255, 255])  # > 1e7: unknown, drawn as no motion
    np.testing.assert_array_equal(img[0, :, 0, 2], [255, 0, 0])


def test_bad_flow_shape():
    with pytest.raises(ValueError, match=r"flow must have shape \(B, 2, H, W\)"):
        reference.flow_to_image(np.zeros((1, 3, 4, 4)))
