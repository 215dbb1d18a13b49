"""Shapes of contextual attention, checked once and shared by the reference and the torch layer.

Pure Python: every size the layer uses follows from the input shapes and the four integer parameters, so both
implementations validate their inputs with the same rules and the same messages (spec §4, steps 1-3 and 8).
"""

from __future__ import annotations

from dataclasses import dataclass

from .tf_ops import same_padding


@dataclass(frozen=True)
class Geometry:
    """All sizes of one contextual-attention call (see `attention_geometry`)."""

    H: int  # f's height and width (the output has this size)
    W: int
    Hb: int  # b's height and width
    Wb: int
    fh: int  # f↓: the downsampled foreground, one query per position
    fw: int
    bh: int  # b↓: the downsampled background, one key per matching patch
    bw: int
    K: int  # raw (paste) patch size 2r and stride r*s
    S: int
    L: int  # number of background patches (keys)
    lw: int  # width of the grid of keys (bw for stride 1)
    pt: int  # top/left padding of the paste (conv2d_transpose SAME)
    pl: int

    @property
    def P(self) -> int:  # noqa: N802  (paper notation)
        """Number of query positions."""
        return self.fh * self.fw


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def attention_geometry(
    f_hw: tuple[int, int], b_hw: tuple[int, int], ksize: int, stride: int, rate: int, fuse_k: int, fuse: bool
) -> Geometry:
    """Derive and check every size of a contextual-attention call; raise ValueError naming the broken rule."""
    ksize = _positive_int("ksize", ksize)
    stride = _positive_int("stride", stride)
    rate = _positive_int("rate", rate)
    _positive_int("fuse_k", fuse_k)
    H, W = f_hw
    Hb, Wb = b_hw
    # f↓ = resize(f, scale=1/r) and b↓ = resize(b, to_shape=(H_b/r, W_b/r)): the official code's two spellings
    fh, fw = int(H * (1.0 / rate)), int(W * (1.0 / rate))
    bh, bw = int(Hb / rate), int(Wb / rate)
    if min(fh, fw, bh, bw) < 1:
        raise ValueError(
            f"spatial size too small for rate={rate}: f is {H}x{W} and b is {Hb}x{Wb}, both need at least {rate} "
            "rows and columns"
        )
    # conv2d_transpose(stride r, SAME) back to H×W needs ceil(H/r) == fh: H and W multiples of the rate
    if -(-H // rate) != fh or -(-W // rate) != fw:
        raise ValueError(f"f is {H}x{W}: its height and width must be multiples of rate={rate}")
    K, S = 2 * rate, rate * stride
    # the raw patches (stride r*s on b) and the matching patches (stride s on b↓) must pair up one to one
    lh, lw = -(-bh // stride), -(-bw // stride)
    if (-(-Hb // S), -(-Wb // S)) != (lh, lw):
        raise ValueError(f"b is {Hb}x{Wb}: its height and width must be multiples of rate={rate}")
    if fuse and stride != 1:
        raise ValueError("fuse=True needs stride=1 (the official fuse reshapes scores over the full b↓ grid)")
    pt, _ = same_padding(H, K, rate)
    pl, _ = same_padding(W, K, rate)
    return Geometry(H, W, Hb, Wb, fh, fw, bh, bw, K, S, lh * lw, lw, pt, pl)


def check_shapes(
    f_shape: tuple[int, ...], b_shape: tuple[int, ...], mask_shape: tuple[int, ...] | None, per_sample_mask: bool
) -> None:
    """Check the NCHW shapes of f, b and mask; raise ValueError naming the argument and what was expected."""
    for name, shape in (("f", f_shape), ("b", b_shape)):
        if len(shape) != 4:
            raise ValueError(f"{name} must be a 4-D NCHW array, got shape {tuple(shape)}")
    if f_shape[:2] != b_shape[:2]:
        raise ValueError(
            f"f and b must have the same batch size and channels, got f {tuple(f_shape)} and b {tuple(b_shape)}"
        )
    if mask_shape is None:
        return
    batch = f_shape[0]
    if len(mask_shape) != 4 or mask_shape[1] != 1 or tuple(mask_shape[2:]) != tuple(b_shape[2:]):
        raise ValueError(
            f"mask must have shape (1 or B, 1, {b_shape[2]}, {b_shape[3]}) to match b, got {tuple(mask_shape)}"
        )
    if mask_shape[0] not in (1, batch):
        raise ValueError(f"mask batch must be 1 or {batch} (the batch of f), got {mask_shape[0]}")
    if mask_shape[0] != 1 and not per_sample_mask:
        raise ValueError(
            f"mask has batch {mask_shape[0]}: pass per_sample_mask=True to use one mask per sample, or mask[:1] for "
            "the official shared mask"
        )


def check_options(mask_softmax: str, paste_norm: str) -> None:
    """Check the two string switches of the extensions."""
    if mask_softmax not in ("official", "exact"):
        raise ValueError(f"mask_softmax must be 'official' or 'exact', got {mask_softmax!r}")
    if paste_norm not in ("official", "overlap"):
        raise ValueError(f"paste_norm must be 'official' or 'overlap', got {paste_norm!r}")
