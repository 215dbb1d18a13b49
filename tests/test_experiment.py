"""The main job's pieces: held-out L1 against the trivial fill, the figures, and a short run end to end."""

from __future__ import annotations

import json

import pytest
import small_runs
import torch

from deepfill_min.checkpoint import load_checkpoint
from deepfill_min.config import make_config
from deepfill_min.experiment import config_from_run, holdout_images, train_and_evaluate
from deepfill_min.generator import Generator
from deepfill_min.holdout import centre_mask, hole_l1, mean_fill
from deepfill_min.weights import load_generator

SMALL = [*small_runs.SMALL, "d_steps=1", "max_iters=2", "sample_every=1", "checkpoint_every=2"]


def test_mean_fill_and_hole_l1_closed_forms():
    x = torch.zeros(2, 3, 16, 16)
    x[0, :, :8] = 1.0  # top half white, bottom half black
    mask = centre_mask((16, 16), (8, 8))
    assert mask.sum() == 64 and mask[0, 0, 4:12, 4:12].all()
    filled = mean_fill(x, mask)
    known_mean = x[0, 0][mask[0, 0] == 0].mean()
    assert torch.allclose(filled[0, :, 8, 8], known_mean.expand(3)) and torch.equal(filled[1], x[1])
    scores = hole_l1(Generator(cnum=8), x, mask)
    # image 0: half the hole is 1 and half 0, |μ - 1| + |μ - 0| = 1 on average 0.5; image 1 is exact; /2 for [0, 1]
    assert scores["mean_fill"] == pytest.approx((0.5 + 0.0) / 2 / 2, abs=1e-6)
    assert 0 <= scores["model"] <= 1


def test_a_short_run_writes_its_report_figures_and_log(tmp_path):
    report = train_and_evaluate(make_config("tiny", overrides=SMALL), tmp_path)
    assert report["step"] == 2 and set(report) == {"initial", "final", "step"}
    assert json.loads((tmp_path / "holdout.json").read_text()) == report
    for name in ("holdout.png", "samples/step_00000001.png", "log.csv", "config.yaml", "ckpt_00000002.pt"):
        assert (tmp_path / name).is_file(), name
    with pytest.raises(ValueError, match="--resume"):
        train_and_evaluate(make_config("tiny", overrides=SMALL), tmp_path)
    cfg = config_from_run(tmp_path, ["max_iters=3"])
    assert cfg.max_iters == 3 and cfg.cnum == 8
    assert train_and_evaluate(cfg, tmp_path, resume=True)["step"] == 3


def test_a_run_with_the_weight_average_reports_the_average(tmp_path):
    """The held-out report of an ``ema_decay`` run is the average's (what its export gives), not the last weights'."""
    cfg = make_config("tiny", overrides=[*SMALL, "ema_decay=0.5"])
    report = train_and_evaluate(cfg, tmp_path)
    images, mask = holdout_images(cfg), centre_mask(cfg.image_size, cfg.hole_size)
    assert report["final"]["model"] == hole_l1(load_generator(tmp_path)[0], images, mask)["model"]
    trained = Generator(cfg.cnum)
    trained.load_state_dict(load_checkpoint(tmp_path)["generator"])
    assert report["final"]["model"] != hole_l1(trained, images, mask)["model"]
