r"""The flow colour wheel used to picture attention offsets (spec §4.7).

The official code colours offsets with the Middlebury optical-flow code: the *direction* of a displacement $(u, v)$
picks a hue on a wheel of 55 colours (red → yellow → green → cyan → blue → magenta → red, with 15, 6, 4, 11, 13 and
6 steps), and its *length*, divided by the largest length seen, picks the saturation: 0 is white, 1 the full colour,
and anything beyond is darkened to 3/4.

Official quirks kept here: the first channel of the offsets (the vertical one) plays the role of $u$, and the largest
length is accumulated over the batch, not reset per image (`accumulate=False` resets it).
"""

from __future__ import annotations

import numpy as np

from .backend import get_array_module

# steps between the six primary and secondary colours: R→Y, Y→G, G→C, C→B, B→M, M→R
WHEEL_STEPS = (15, 6, 4, 11, 13, 6)


def make_color_wheel(xp=np):
    """The 55×3 wheel of RGB colours in [0, 255]."""
    rows = []
    # each segment ramps one channel up or down while the others hold: (channel, rising?, the held channels' values)
    plan = ((1, True, (255, None, 0)), (0, False, (None, 255, 0)), (2, True, (0, 255, None)),
            (1, False, (0, None, 255)), (0, True, (None, 0, 255)), (2, False, (255, 0, None)))  # fmt: skip
    for steps, (channel, rising, held) in zip(WHEEL_STEPS, plan, strict=True):
        ramp = np.floor(255 * np.arange(steps) / steps)
        seg = np.zeros((steps, 3))
        for ch, value in enumerate(held):
            seg[:, ch] = (ramp if rising else 255 - ramp) if ch == channel else value
        rows.append(seg)
    return xp.asarray(np.concatenate(rows))


def _colour(u, v, wheel):
    """RGB in [0, 1] for displacements already divided by the largest length."""
    xp = get_array_module(u)
    n = wheel.shape[0]
    rad = xp.sqrt(u**2 + v**2)
    # hue: the angle of (-u, -v), mapped to a fractional index on the wheel
    fk = (xp.arctan2(-v, -u) / np.pi + 1) / 2 * (n - 1)
    k0 = xp.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % n
    frac = (fk - k0)[..., None]
    col = (1 - frac) * wheel[k0] / 255 + frac * wheel[k1] / 255
    # saturation: white at rest, full colour at the largest length, darker beyond
    inside = (rad <= 1)[..., None]
    return xp.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)


def flow_to_image(flow, accumulate: bool = True):
    """Colour-code offsets (B, 2, H, W) as uint8 RGB images (B, 3, H, W), the official way."""
    xp = get_array_module(flow)
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must have shape (B, 2, H, W), got {tuple(flow.shape)}")
    wheel = make_color_wheel(xp)
    flow = xp.asarray(flow, dtype=np.float64)
    out, maxrad = [], -1.0
    for u, v in flow:
        # NaN and huge values (> 1e7) mean "unknown": drawn as black / zero motion
        nan = xp.isnan(u) | xp.isnan(v)
        unknown = nan | (xp.abs(u) > 1e7) | (xp.abs(v) > 1e7)
        u, v = xp.where(unknown, 0.0, u), xp.where(unknown, 0.0, v)
        rad = float(xp.sqrt(u**2 + v**2).max())
        maxrad = max(maxrad, rad) if accumulate else rad
        scale = maxrad + np.finfo(float).eps
        img = xp.floor(255 * _colour(u / scale, v / scale, wheel) * (1 - nan[..., None]))
        out.append(img.astype(np.uint8).transpose(2, 0, 1))
    return xp.stack(out)
