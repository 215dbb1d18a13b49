"""Metrics (closed forms) and the evaluation command (baselines on the built-in held-out images)."""

from __future__ import annotations

import math

import pytest
import torch

from deepfill_min.cli import main
from deepfill_min.evaluate import evaluate, evaluation_masks
from deepfill_min.metrics import region_metrics, ssim_map


def test_metric_closed_forms():
    truth = torch.full((1, 3, 16, 16), 0.5)
    pred = truth.clone()
    region = torch.zeros(1, 1, 16, 16)
    region[..., 4:8, 4:8] = 1
    pred[..., 4:8, 4:8] = 0.6  # off by 0.1 inside the region only
    m = region_metrics(pred, truth, region)
    assert m["mean_l1"] == pytest.approx(0.1) and m["relative_l1"] == pytest.approx(0.2)
    assert m["relative_l2_sq"] == pytest.approx(0.01 / 0.25) and m["psnr"] == pytest.approx(20.0)
    whole = region_metrics(pred, truth, torch.ones_like(region))
    assert whole["mean_l1"] == pytest.approx(0.1 * 16 / 256)
    # TV counts the two steps at the square's edges that fall inside the region: 4 rows + 4 columns of 0.1
    assert m["tv"] == pytest.approx((4 + 4) * 3 * 0.1 / (16 * 3))
    assert region_metrics(truth, truth, region)["ssim"] == pytest.approx(1.0)
    assert math.isfinite(region_metrics(truth, truth, region)["psnr"])
    noisy = (truth + 0.2 * torch.randn_like(truth)).clamp(0, 1)
    assert ssim_map(noisy, truth).mean() < 0.5


def test_mask_set_is_fixed_and_evaluation_ranks_methods():
    a, b = evaluation_masks(3, (32, 32), (16, 16)), evaluation_masks(3, (32, 32), (16, 16))
    assert all(torch.equal(x, y) for x, y in zip(a["random box"], b["random box"], strict=True))
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    rows = evaluate({}, images, (16, 16))
    methods = {r["method"] for r in rows}
    assert "mean fill" in methods and "model" not in methods
    hole = next(r for r in rows if r["method"] == "mean fill" and r["region"] == "hole" and r["masks"] == "centre")
    image = next(r for r in rows if r["method"] == "mean fill" and r["region"] == "image" and r["masks"] == "centre")
    assert image["mean_l1"] < hole["mean_l1"]  # the known pixels are exact
    from deepfill_min.generator import Generator  # noqa: PLC0415

    rows = evaluate({"a": Generator(cnum=8), "b": Generator(cnum=8, attention=False)}, images, (16, 16))
    names = {r["method"] for r in rows}
    assert {"coarse (a)", "model (a)", "model (b)"} <= names and len(rows) == 2 * 2 * len(names)


def test_evaluate_command_writes_tables(tmp_path, capsys):
    assert main(["evaluate", "--n", "2", "--image-size", "32", "32", "--hole-size", "16", "16", "--out",
                 str(tmp_path)]) == 0  # fmt: skip
    text = (tmp_path / "results.md").read_text()
    assert "| mean fill |" in text and "centre masks, hole" in text and (tmp_path / "results.csv").is_file()
    assert "wrote" in capsys.readouterr().out
