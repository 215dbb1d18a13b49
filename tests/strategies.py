"""Random contextual-attention problems for the property tests: shapes, parameters, masks and data."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def attention_cases(draw, max_cells: int = 6, extensions: bool = True) -> dict:
    """A dict with f, b, mask (float64 NumPy, NCHW) and the keyword arguments of a contextual-attention call.

    Sizes are multiples of the rate with odd and even cell counts; f may be b or differ from it in size; masks may be
    absent, shared or per sample; the data may be ReLU-sparse (all-zero background patches) or faint (norms near 1e-4).
    """
    rate = draw(st.sampled_from([1, 2, 2, 3]))
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    fuse = draw(st.booleans())
    stride = 1 if fuse else draw(st.sampled_from([1, 1, 2]))
    ksize = draw(st.sampled_from([1, 2, 3, 3]))
    fuse_k = draw(st.sampled_from([1, 2, 3, 3, 3]))
    cells = st.integers(1, max_cells)
    hf, wf = rate * draw(cells), rate * draw(cells)
    self_attention = draw(st.booleans())  # f = b, the model's case
    hb, wb = (hf, wf) if self_attention or draw(st.booleans()) else (rate * draw(cells), rate * draw(cells))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    f = rng.normal(size=(batch, channels, hf, wf))
    b = rng.normal(size=(batch, channels, hb, wb))
    if draw(st.booleans()):  # ReLU features: all-zero patches appear
        f, b = np.maximum(f, 0), np.maximum(b, 0)
    if draw(st.booleans()):  # faint background rows: patch norms near the 1e-4 clamp of §4.3
        b[:, :, : b.shape[2] // 2] *= 1e-4
    mask_kind = draw(st.sampled_from(["none", "shared", "per_sample"] if extensions else ["none", "shared"]))
    mask = None
    if mask_kind != "none":
        n = 1 if mask_kind == "shared" else batch
        mask = (rng.random((n, 1, hb, wb)) < draw(st.sampled_from([0.05, 0.2, 0.6]))).astype(np.float64)
        b = b * (1 - mask)  # as in the model: the hole's features are unknown
    if self_attention:
        f = b.copy()
    kwargs = dict(ksize=ksize, stride=stride, rate=rate, fuse_k=fuse_k, fuse=fuse)
    kwargs["softmax_scale"] = draw(st.sampled_from([1.0, 10.0, 10.0, 30.0]))
    kwargs["per_sample_mask"] = mask_kind == "per_sample"
    if extensions:
        kwargs["mask_softmax"] = draw(st.sampled_from(["official", "exact"]))
        kwargs["paste_norm"] = draw(st.sampled_from(["official", "overlap"]))
    return dict(f=f, b=b, mask=mask, kwargs=kwargs)
