"""The torch layer against the NumPy oracle, plus the layer's own properties (spec §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import attention_cases

import reference
from deepfill_min import ContextualAttention, attention_weights, contextual_attention


def _t(x):
    return None if x is None else torch.from_numpy(x)


def _decisive(case: dict, margin: float = 1e-9) -> np.ndarray:
    """Queries whose best key beats the runner-up by `margin` in the reference weights: argmax is well defined."""
    kw = {k: v for k, v in case["kwargs"].items() if k != "paste_norm"}
    a = reference.attention_weights(case["f"], case["b"], case["mask"], **kw)
    top2 = np.sort(a, axis=-1)[..., -2:] if a.shape[-1] > 1 else np.concatenate([np.zeros_like(a), a], -1)
    return (top2[..., 1] - top2[..., 0] > margin) | (a.max(-1) == 0)


@given(attention_cases())
def test_float64_matches_reference(case):
    y_ref, off_ref = reference.contextual_attention(case["f"], case["b"], case["mask"], **case["kwargs"])
    f = _t(case["f"])
    # self-attention (the model's case) passes the same tensor twice: the layer shares its patches then
    b = f if case["f"].shape == case["b"].shape and (case["f"] == case["b"]).all() else _t(case["b"])
    y, off = contextual_attention(f, b, _t(case["mask"]), **case["kwargs"], return_offsets=True)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-10, atol=1e-10)
    assert off.dtype == torch.int64 and tuple(off.shape) == off_ref.shape
    decisive = _decisive(case).reshape(off_ref.shape[0], 1, *off_ref.shape[2:])
    decisive = np.broadcast_to(decisive, off_ref.shape)
    np.testing.assert_array_equal(off.numpy()[decisive], off_ref[decisive])


@given(attention_cases(), st.sampled_from([torch.float64, torch.float32]))
def test_channels_last_features_match_reference(case, dtype):
    """The model's layout on the CPU: channels-last f and b (their patches gathered as (k, k, C) rows), same output."""
    y_ref, _ = reference.contextual_attention(case["f"], case["b"], case["mask"], **case["kwargs"])
    f = _t(case["f"]).to(dtype).contiguous(memory_format=torch.channels_last)
    same = case["f"].shape == case["b"].shape and (case["f"] == case["b"]).all()
    b = f if same else _t(case["b"]).to(dtype).contiguous(memory_format=torch.channels_last)
    mask = None if case["mask"] is None else _t(case["mask"]).to(dtype)
    y, _ = contextual_attention(f, b, mask, **case["kwargs"])
    scale = max(1.0, float(np.abs(y_ref).max())) * case["kwargs"]["softmax_scale"] / 10
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=0, atol=1e-10 if dtype == torch.float64 else 1e-4 * scale)


@given(attention_cases())
def test_weights_match_reference(case):
    kw = {k: v for k, v in case["kwargs"].items() if k != "paste_norm"}
    a_ref = reference.attention_weights(case["f"], case["b"], case["mask"], **kw)
    a = attention_weights(_t(case["f"]), _t(case["b"]), _t(case["mask"]), **kw)
    np.testing.assert_allclose(a.numpy(), a_ref, rtol=1e-10, atol=1e-12)


@given(attention_cases())
def test_float32_matches_reference(case):
    """float32 agrees with the float64 oracle to 1e-4 of the output's scale (the softmax scale amplifies rounding)."""
    y_ref, _ = reference.contextual_attention(case["f"], case["b"], case["mask"], **case["kwargs"])
    y, _ = contextual_attention(*(None if x is None else _t(x).float() for x in (case["f"], case["b"], case["mask"])),
                                **case["kwargs"])  # fmt: skip
    assert y.dtype == torch.float32
    scale = max(1.0, float(np.abs(y_ref).max()))
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=0, atol=1e-4 * scale * case["kwargs"]["softmax_scale"] / 10)


@given(attention_cases(), st.data())
def test_chunked_equals_unchunked(case, data):
    args = (_t(case["f"]), _t(case["b"]), _t(case["mask"]))
    y_full, off_full = contextual_attention(*args, **case["kwargs"], return_offsets=True, chunk_size=10**9)
    n_queries = off_full.shape[2] * off_full.shape[3]
    chunk = data.draw(st.integers(1, n_queries), label="chunk_size")
    y, off = contextual_attention(*args, **case["kwargs"], return_offsets=True, chunk_size=chunk)
    torch.testing.assert_close(y, y_full, rtol=1e-12, atol=1e-12)
    decisive = np.broadcast_to(_decisive(case).reshape(off.shape[0], 1, *off.shape[2:]), off.shape)
    np.testing.assert_array_equal(off.numpy()[decisive], off_full.numpy()[decisive])


@pytest.mark.parametrize("fuse_k", [4, 5, 6])
@pytest.mark.parametrize("size", [(2, 12), (4, 12), (6, 10)])
def test_chunked_fuse_with_steps_past_the_key_grid_matches_the_reference(fuse_k, size):
    """Fuse kernels whose steps (up to fuse_k // 2, one more forward than back when it is even) reach past the key
    grid's height, in chunks (the halo path, as hole-only inference uses it)."""
    rng = np.random.default_rng(fuse_k)
    f = rng.normal(size=(1, 3, *size))
    mask = np.zeros((1, 1, *size))
    mask[..., : size[0] // 2, 2:5] = 1
    y_ref, _ = reference.contextual_attention(f, f, mask, fuse_k=fuse_k)
    y, _ = contextual_attention(_t(f), _t(f), _t(mask), fuse_k=fuse_k, chunk_size=2)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-10, atol=1e-10)


def test_memory_budget_sets_chunks_that_agree():
    """A tiny memory budget forces one-query chunks (halo and wrap-around included); the result does not change."""
    rng = np.random.default_rng(1)
    f = torch.from_numpy(rng.normal(size=(2, 3, 12, 16)))
    mask = torch.zeros(1, 1, 12, 16, dtype=torch.float64)
    mask[..., 3:9, 4:10] = 1
    y_full, _ = contextual_attention(f, f, mask)
    y_small, _ = contextual_attention(f, f, mask, memory_budget=1)
    torch.testing.assert_close(y_small, y_full, rtol=1e-12, atol=1e-12)


@given(attention_cases(extensions=False))
@example(
    case=dict(
        f=np.ones((1, 1, 4, 4)), b=np.ones((1, 1, 4, 4)) * np.array([1.0, 0, 0, 0]),
        mask=np.array([[[[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]]], dtype=float),
        kwargs=dict(ksize=3, stride=1, rate=2, fuse_k=3, fuse=True, softmax_scale=10.0, per_sample_mask=False),
    )
)
def test_masked_keys_get_zero_weight_and_valid_weights_have_closed_form(case):
    """Masked keys: weight exactly 0. Official valid weights: e^{λs} / (Σ_valid e^{λs} + N_masked); exact: sum to 1."""
    f, b, mask, kw = case["f"], case["b"], case["mask"], dict(case["kwargs"])
    if mask is None:
        mask = np.zeros((1, 1, *b.shape[2:]))
    lam = kw.pop("softmax_scale")
    scores, g = _oracle_scores(f, b, kw)
    valid = reference.valid_keys(mask, g, kw["ksize"], kw["stride"])[0] > 0
    a_off = attention_weights(_t(f), _t(b), _t(mask), softmax_scale=lam, **kw).numpy()
    a_exact = attention_weights(_t(f), _t(b), _t(mask), softmax_scale=lam, mask_softmax="exact", **kw).numpy()
    assert (a_off[..., ~valid] == 0).all() and (a_exact[..., ~valid] == 0).all()
    e = np.exp(lam * scores) * valid
    expected = e / (e.sum(-1, keepdims=True) + (~valid).sum())
    np.testing.assert_allclose(a_off, expected, rtol=1e-9, atol=1e-12)
    if valid.any():
        np.testing.assert_allclose(a_exact, e / e.sum(-1, keepdims=True), rtol=1e-9, atol=1e-12)
    else:
        assert (a_exact == 0).all()


def _oracle_scores(f, b, kw):
    """Fused scores (B, P, L) computed with the oracle's building blocks, step by step (§4.2-4.5), and the geometry."""
    g = reference.attention_geometry(f.shape[2:], b.shape[2:], kw["ksize"], kw["stride"], kw["rate"], kw["fuse_k"],
                                     kw["fuse"])  # fmt: skip
    fd = reference.resize_nearest_ac(f, (g.fh, g.fw))
    bd = reference.resize_nearest_ac(b, (g.bh, g.bw))
    w = reference.extract_patches(bd, kw["ksize"], kw["stride"]).reshape(b.shape[0], g.L, -1)
    w = w / np.maximum(np.linalg.norm(w, axis=-1, keepdims=True), 1e-4)
    out = []
    for n in range(f.shape[0]):
        s = reference.extract_patches(fd[n : n + 1], kw["ksize"], 1).reshape(g.P, -1) @ w[n].T
        out.append(reference.fuse_scores(s, g, kw["fuse_k"]) if kw["fuse"] else s)
    return np.stack(out), g


def _relu_case(seed: int, batch=1, channels=2, size=(12, 12), hole=(4, 8, 4, 8), zero_patches=True):
    """Small float64 ReLU features and a hole. With `zero_patches`, the hole and a 3×3 corner of the features are
    zeroed, so some background patches are all zero (their norm is clamped at 1e-4)."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(batch, channels, *size)), 0)
    mask = np.zeros((1, 1, *size))
    top, bottom, left, right = hole
    mask[..., top:bottom, left:right] = 1
    if zero_patches:
        x = x * (1 - mask)
        x[..., :3, :3] = 0
    else:
        x = x + 0.1  # no patch near the clamp: the function is smooth enough for finite differences
    return torch.from_numpy(x), torch.from_numpy(mask)


@pytest.mark.parametrize(("fuse", "fuse_k"), [(True, 3), (True, 2), (False, 3)])
@pytest.mark.parametrize("chunk_size", [None, 5])
@pytest.mark.parametrize("mask_softmax", ["official", "exact"])
def test_gradcheck(fuse, fuse_k, chunk_size, mask_softmax):
    x, mask = _relu_case(0, zero_patches=False)
    x = 0.2 * x  # small features: soft weights, so the softmax's Jacobian is exercised (checked below)
    f = (x + 0.02 * torch.from_numpy(np.random.default_rng(1).normal(size=x.shape))).requires_grad_()
    b = x.clone().requires_grad_()
    kw = dict(fuse=fuse, fuse_k=fuse_k, mask_softmax=mask_softmax)
    # not vacuous: some keys are valid and many weights are neither 0 nor 1
    a = attention_weights(f, b, mask, **kw).detach()
    assert (a.sum(-1) > 0).all() and ((a > 0.01) & (a < 0.99)).sum() > 20

    def fn(f, b):
        return contextual_attention(f, b, mask, paste_norm="overlap" if fuse_k == 2 else "official",
                                    chunk_size=chunk_size, **kw)[0]  # fmt: skip

    assert torch.autograd.gradcheck(fn, (f, b), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradient_is_finite_when_a_background_patch_is_all_zero():
    """At an all-zero patch ŵ = w / 1e-4: the gradient is finite (no NaN from sqrt at 0) and exact for f."""
    x, mask = _relu_case(2, batch=2, channels=4, size=(16, 16), hole=(4, 12, 4, 12))
    assert attention_weights(x, x, mask).max() > 0.05  # some keys are valid
    feats = x.float().requires_grad_()
    y, _ = contextual_attention(feats, feats, mask.float())
    (y**2).sum().backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    b = x.clone()

    def fn(f):
        return contextual_attention(f, b, mask)[0]

    f = (0.2 * x + 0.02).requires_grad_()
    assert torch.autograd.gradcheck(fn, (f,), eps=1e-6, atol=1e-6, rtol=1e-4)


@given(attention_cases(), st.randoms(use_true_random=False))
def test_batch_permutation_equivariance(case, rnd):
    f, b, mask = _t(case["f"]), _t(case["b"]), _t(case["mask"])
    perm = list(range(f.shape[0]))
    rnd.shuffle(perm)
    y, off = contextual_attention(f, b, mask, **case["kwargs"], return_offsets=True)
    pm = mask[perm] if mask is not None and mask.shape[0] > 1 else mask
    y_p, off_p = contextual_attention(f[perm], b[perm], pm, **case["kwargs"], return_offsets=True)
    torch.testing.assert_close(y_p, y[perm], rtol=1e-12, atol=1e-12)
    decisive = _decisive(case)
    decisive = np.broadcast_to(decisive.reshape(off.shape[0], 1, *off.shape[2:]), off.shape)[perm]
    np.testing.assert_array_equal(off_p.numpy()[decisive], off[perm].numpy()[decisive])


@given(attention_cases(extensions=False))
def test_equal_per_sample_masks_give_the_shared_mask_result(case):
    if case["mask"] is None:
        return
    f, b, mask = _t(case["f"]), _t(case["b"]), _t(case["mask"][:1])
    kw = {**case["kwargs"], "per_sample_mask": False}
    y_shared, _ = contextual_attention(f, b, mask, **kw)
    y_each, _ = contextual_attention(f, b, mask.expand(f.shape[0], -1, -1, -1), **{**kw, "per_sample_mask": True})
    torch.testing.assert_close(y_each, y_shared, rtol=0, atol=0)
    y_ref, _ = reference.contextual_attention(case["f"], case["b"], case["mask"][:1].repeat(f.shape[0], 0),
                                              **{**kw, "per_sample_mask": True})  # fmt: skip
    np.testing.assert_allclose(y_ref, y_shared.numpy(), rtol=1e-10, atol=1e-10)


@given(attention_cases(), st.sampled_from([0.25, 0.5, 3.0]))
def test_scaling_f_scales_the_softmax_temperature(case, alpha):
    """Only b is normalised, so attention(αf, b, λ) = attention(f, b, αλ) (the score is not a cosine, §4.3)."""
    kw = case["kwargs"]
    f, b, mask = _t(case["f"]), _t(case["b"]), _t(case["mask"])
    y1, _ = contextual_attention(alpha * f, b, mask, **kw)
    y2, _ = contextual_attention(f, b, mask, **{**kw, "softmax_scale": alpha * kw["softmax_scale"]})
    torch.testing.assert_close(y1, y2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("rate", [1, 2])
def test_self_attention_with_a_sharp_softmax_reconstructs_b(rate):
    """f = b, no fuse, λ → ∞: each query picks its own patch (Cauchy-Schwarz), so the paste rebuilds b.

    With the official ÷4 only pixels covered by 4 patches come back exactly (edges by 2, corners by 1: §4.8);
    with the overlap normalisation every pixel does.
    """
    b = torch.from_numpy(np.random.default_rng(3).normal(size=(2, 16, 12, 10)))
    y_overlap, off = contextual_attention(
        b, b, rate=rate, fuse=False, softmax_scale=1e4, paste_norm="overlap", return_offsets=True
    )
    assert (off == 0).all()
    torch.testing.assert_close(y_overlap, b, rtol=1e-9, atol=1e-9)
    y_official, _ = contextual_attention(b, b, rate=rate, fuse=False, softmax_scale=1e4)
    count = torch.full((12, 10), 4.0, dtype=torch.float64)
    count[0, :] = count[:, 0] = 2.0
    if rate == 2:  # K = 4, stride 2, SAME pads 1 all round: both borders are covered twice
        count[-1, :] = count[:, -1] = 2.0
        count[-1, -1] = count[-1, 0] = count[0, -1] = 1.0
    count[0, 0] = 1.0
    if rate == 1:  # K = 2, stride 1, SAME pads (0, 1): only the first row and column lose patches
        count[0, 1:] = count[1:, 0] = 2.0
    torch.testing.assert_close(y_official, b * count / 4, rtol=1e-9, atol=1e-9)


def test_module_wraps_the_function():
    f = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    layer = ContextualAttention(rate=2, softmax_scale=5.0, mask_softmax="exact")
    y, _ = layer(f, f)
    y_fn, _ = contextual_attention(f, f, rate=2, softmax_scale=5.0, mask_softmax="exact")
    torch.testing.assert_close(y, y_fn, rtol=0, atol=0)
    assert "mask_softmax='exact'" in repr(layer)
    with pytest.raises(ValueError, match="paste_norm"):
        ContextualAttention(paste_norm="mean")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_and_autocast(dtype):
    x, mask = _relu_case(4, batch=2, channels=8, size=(16, 16), hole=(4, 12, 4, 12))
    x, mask = x.float(), mask.float()
    assert attention_weights(x, x, mask).max() > 0.05  # some keys are valid
    y32, _ = contextual_attention(x, x, mask)
    y_half, _ = contextual_attention(x.to(dtype), x.to(dtype), mask.to(dtype))
    with torch.autocast("cpu", dtype=dtype):
        y_auto, _ = contextual_attention(x, x, mask)
    for y in (y_half, y_auto):
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.float(), y32, rtol=0, atol=0.05 * float(y32.abs().max()))


def _errors_case():
    f = torch.zeros(2, 3, 8, 8)
    return f, f.clone(), torch.zeros(1, 1, 8, 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f, b, m: (f[0], b, m, {}), "f must be a 4-D NCHW"),
        (lambda f, b, m: (f, b[:1], m, {}), "same batch size and channels"),
        (lambda f, b, m: (f, b[:, :2], m, {}), "same batch size and channels"),
        (lambda f, b, m: (f, b, m[..., :4], {}), "mask must have shape"),
        (lambda f, b, m: (f, b, torch.zeros(3, 1, 8, 8), {}), "mask batch must be 1 or 2"),
        (lambda f, b, m: (f, b, torch.zeros(2, 1, 8, 8), {}), "per_sample_mask=True"),
        (lambda f, b, m: (f.long(), b, m, {}), "f must be a floating-point"),
        (lambda f, b, m: (f, b.numpy(), m, {}), "b must be a floating-point torch.Tensor"),
        (lambda f, b, m: (f, b, m.bool(), {}), "mask must be a floating-point"),
        (lambda f, b, m: (f[..., :1, :1], b[..., :1, :1], None, {}), "too small for rate=2"),
        (lambda f, b, m: (f[..., :7, :], b, m, {}), "multiples of rate=2"),
        (lambda f, b, m: (f, b[..., :7], None, {}), "multiples of rate=2"),
        (lambda f, b, m: (f, b, m, {"stride": 2}), "fuse=True needs stride=1"),
        (lambda f, b, m: (f, b, m, {"ksize": 0}), "ksize must be a positive integer"),
        (lambda f, b, m: (f, b, m, {"rate": 1.5}), "rate must be a positive integer"),
        (lambda f, b, m: (f, b, m, {"mask_softmax": "neg_inf"}), "mask_softmax must be"),
        (lambda f, b, m: (f, b, m, {"chunk_size": 0}), "chunk_size must be a positive integer"),
    ],
)
def test_bad_input_gives_a_clear_error(change, message):
    f, b, m, kw = change(*_errors_case())
    with pytest.raises(ValueError, match=message):
        contextual_attention(f, b, m, **kw)
    if not isinstance(b, np.ndarray) and "chunk_size" not in kw:  # the oracle checks the same rules
        arrays = [None if t is None else t.numpy() for t in (f, b, m)]
        with pytest.raises(ValueError, match=message.replace(" torch.Tensor", "")):
            reference.contextual_attention(*arrays, **kw)


@pytest.mark.parametrize(("f_shape", "b_shape", "kwargs"), [
    ((1, 2, 2, 4), (1, 2, 2, 4), {"fuse_k": 7}),  # a fuse kernel longer than the key grid
    ((1, 2, 8, 8), (1, 2, 7, 7), {"stride": 4, "fuse": False}),  # SAME leaves a remainder no raw patch reads
    ((1, 2, 5, 5), (1, 2, 5, 5), {"stride": 3, "fuse": False, "rate": 1}),
])  # fmt: skip
def test_odd_geometries_match_the_reference(f_shape, b_shape, kwargs):
    rng = np.random.default_rng(0)
    f, b = rng.random(f_shape), rng.random(b_shape)
    want, _ = reference.contextual_attention(f, b, None, **kwargs)
    for chunk in (None, 1):
        y, _ = contextual_attention(torch.from_numpy(f), torch.from_numpy(b), None, chunk_size=chunk, **kwargs)
        np.testing.assert_allclose(y.numpy(), want, rtol=0, atol=1e-10)


def test_autocast_output_dtype_does_not_depend_on_chunking():
    f = torch.rand(2, 4, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dtypes = {contextual_attention(f, f, None, chunk_size=c)[0].dtype for c in (None, 5)}
    assert len(dtypes) == 1
