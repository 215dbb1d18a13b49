"""The training input pipeline: batches as pure functions of their counters, and one host read per logging step."""

from __future__ import annotations

import numpy as np
import pytest
import small_runs
import torch
from PIL import Image, JpegImagePlugin
from torch.utils._python_dispatch import TorchDispatchMode

from deepfill_min.config import make_config
from deepfill_min.data import BuiltinImages, ImageFiles, to_tensor
from deepfill_min.pipeline import PHASE_G, Batches, BatchStream, counter_seed, to_device
from deepfill_min.train import Trainer


def _cfg(*overrides: str):
    return make_config("tiny", overrides=[*small_runs.SMALL, "batch_size=4", *overrides])


def _keys(n_steps: int, phases: list[int]) -> list[tuple[int, int]]:
    return [(s, p) for s in range(n_steps) for p in phases]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("image", "mask", "alpha")) and a["boxes"] == b["boxes"]


@pytest.mark.parametrize("mode", ["per_sample", "shared"])
def test_a_batch_is_the_same_for_any_number_of_workers_and_any_order(mode):
    cfg = _cfg(f"mask_mode={mode}", "mask_type=brush")
    batches, phases = Batches(BuiltinImages("train", 32), cfg), [0, 1, PHASE_G]
    keys = _keys(3, phases)
    alone = [batches[k] for k in keys]
    stream = BatchStream(batches, phases, num_workers=2, pin_memory=False)
    assert all(_same(stream.get(*k), b) for k, b in zip(keys, alone, strict=True))
    assert _same(stream.get(*keys[4]), alone[4]) and _same(stream.get(*keys[1]), alone[1])  # restarts out of order
    assert not _same(alone[0], alone[1])  # and the counters do change the batch


def test_ranks_draw_different_data_and_the_batch_format_holds():
    cfg = _cfg()
    data = BuiltinImages("train", 32)
    r0, r1 = Batches(data, cfg, rank=0)[(5, 2)], Batches(data, cfg, rank=1)[(5, 2)]
    assert not torch.equal(r0["image"], r1["image"]) and r0["boxes"] != r1["boxes"]
    assert r0["image"].dtype == torch.uint8 and r0["image"].shape == (4, 3, 32, 32)
    assert r0["mask"].dtype == torch.uint8 and r0["mask"].shape == (4, 1, 32, 32)
    assert set(r0["mask"].unique().tolist()) == {0, 1}
    assert r0["alpha"].shape == (2, 4) and 0 <= float(r0["alpha"].min()) and float(r0["alpha"].max()) < 1
    for (t, l, h, w), m in zip(r0["boxes"], r0["mask"], strict=True):
        assert (h, w) == cfg.hole_size and 0 <= t <= 32 - h and 0 <= l <= 32 - w
        assert m[0, t : t + h, l : l + w].sum() == m.sum() > 0  # the hole lies inside its box
    shared = Batches(BuiltinImages("train", 32), _cfg("mask_mode=shared"))[(0, 0)]
    assert shared["mask"].shape == (1, 1, 32, 32) and len(shared["boxes"]) == 1


def test_counter_seeds_are_fixed_and_unrelated():
    assert counter_seed(2018, 0, 0, 0, 0) == counter_seed(2018, 0, 0, 0, 0)
    seeds = {counter_seed(2018, r, s, p, i) for r in (0, 1) for s in range(20) for p in (-1, 0, 1)
             for i in range(-1, 8)}  # fmt: skip
    assert len(seeds) == 2 * 20 * 3 * 9 and all(0 <= s < 2**63 for s in seeds)


def test_to_device_normalises_like_to_tensor():
    batch = Batches(BuiltinImages("train", 32), _cfg())[(0, PHASE_G)]
    x, mask, boxes, alpha = to_device(batch, torch.device("cpu"))
    expected = torch.stack([to_tensor(img.permute(1, 2, 0).numpy()) for img in batch["image"]])
    assert torch.equal(x, expected) and mask.dtype == torch.float32 and boxes == batch["boxes"]


def test_jpeg_draft_mode_decodes_large_photos_small_but_faithfully(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    small = Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8))
    Image.fromarray(np.asarray(small.resize((1024, 768), Image.BICUBIC))).save(tmp_path / "big.jpg", quality=95)
    drafted = []
    draft = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, *a: drafted.append(draft(self, *a)))
    fast = ImageFiles(tmp_path, image_size=(64, 64)).load_uint8(0).astype(int)
    assert drafted and drafted[0][1][2:] == (128, 96)  # decoded at 1/8 scale, still covering 64 x 64
    with Image.open(tmp_path / "big.jpg") as img:
        full = np.asarray(img.convert("RGB").resize((64, 64), Image.BILINEAR)).astype(int)
    assert fast.shape == (64, 64, 3) and np.abs(fast - full).mean() < 6  # both average; different filters


class ScalarReads(TorchDispatchMode):
    """Counts what makes the host wait for a device: scalar reads (item, bool, float, int) and tolist/numpy."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads.append("scalar")
        return func(*args, **(kwargs or {}))


def test_training_reads_the_device_once_per_logging_step(tmp_path, monkeypatch):
    """Iterations 2-7 logged every third step: three reads in all, at steps 3, 6 and 7 (the last). The CPU stands in
    for the device; one loader worker builds the batches (host work) outside the counted process, as in a real run."""
    trainer = Trainer(_cfg("max_iters=1", "log_every=3", "checkpoint_every=100", "sample_every=1000",
                           "num_workers=1", "d_steps=2"), tmp_path)  # fmt: skip
    trainer.train()  # warm-up: the loader's start-up reads a seed once
    trainer.cfg.max_iters = 7
    counter = ScalarReads()
    for name in ("tolist", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            counter.reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    with counter:
        trainer.train()
    assert trainer.step == 7
    assert counter.reads == ["tolist"] * 3, counter.reads
    assert [int(r.split(",")[0]) for r in (tmp_path / "log.csv").read_text().splitlines()[1:]] == list(range(1, 8))
