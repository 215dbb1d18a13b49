"""GPU halves of the property tests: CuPy equals NumPy, CUDA torch equals CPU torch. Skipped without a usable GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from strategies import attention_cases

import reference

needs_cupy = pytest.mark.skipif(not reference.gpu_available(), reason="CuPy with a usable GPU is not available")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


@pytest.mark.gpu
@needs_cupy
@given(attention_cases())
def test_cupy_reference_equals_numpy_reference(case):
    import cupy  # noqa: PLC0415

    y_np, off_np = reference.contextual_attention(case["f"], case["b"], case["mask"], **case["kwargs"])
    on_gpu = [None if x is None else cupy.asarray(x) for x in (case["f"], case["b"], case["mask"])]
    y_cp, off_cp = reference.contextual_attention(*on_gpu, **case["kwargs"])
    assert isinstance(y_cp, cupy.ndarray)
    np.testing.assert_allclose(reference.to_numpy(y_cp), y_np, rtol=1e-10, atol=1e-10)
    assert reference.to_numpy(off_cp).shape == off_np.shape


@pytest.mark.gpu
@needs_cupy
def test_cupy_flow_and_resize_equal_numpy():
    import cupy  # noqa: PLC0415

    flow = np.random.default_rng(0).normal(size=(2, 2, 5, 7)) * 3
    np.testing.assert_array_equal(reference.to_numpy(reference.flow_to_image(cupy.asarray(flow))),
                                  reference.flow_to_image(flow))  # fmt: skip
    x = np.random.default_rng(1).normal(size=(1, 2, 64, 48))
    np.testing.assert_array_equal(reference.to_numpy(reference.resize_nearest_ac(cupy.asarray(x), (32, 24))),
                                  reference.resize_nearest_ac(x, (32, 24)))  # fmt: skip


@pytest.mark.gpu
@needs_cuda
@given(attention_cases())
def test_cuda_layer_equals_the_oracle(case):
    from deepfill_min import contextual_attention  # noqa: PLC0415

    y_ref, _ = reference.contextual_attention(case["f"], case["b"], case["mask"], **case["kwargs"])
    args = [None if x is None else torch.from_numpy(x).cuda() for x in (case["f"], case["b"], case["mask"])]
    y, _ = contextual_attention(*args, **case["kwargs"], chunk_size=7)
    assert y.is_cuda
    np.testing.assert_allclose(y.cpu().numpy(), y_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.gpu
@needs_cuda
def test_cuda_training_iterations_never_wait_for_the_gpu(tmp_path):
    """Between logging steps a CUDA run makes no synchronising call: the sync debug mode turns any into an error."""
    import small_runs  # noqa: PLC0415

    from deepfill_min.config import make_config  # noqa: PLC0415
    from deepfill_min.train import Trainer  # noqa: PLC0415

    cfg = make_config("tiny", overrides=[*small_runs.SMALL, "device=cuda", "num_workers=1", "d_steps=2",
                                         "log_every=100", "checkpoint_every=100"])  # fmt: skip
    trainer = Trainer(cfg, tmp_path)
    trainer.iteration()  # warm-up: cuDNN's algorithm search and the loader's start may synchronise
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.iteration()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    rows, stop = trainer.log.flush()  # the one read
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and not stop
