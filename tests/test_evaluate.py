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
    assert {r["group"] for r in rows} == {"all"}  # no families given


def test_random_boxes_have_the_hole_size_exactly():
    for mask in evaluation_masks(20, (48, 40), (16, 8))["random box"]:
        rows, cols = torch.nonzero(mask[0, 0], as_tuple=True)
        assert mask.sum() == 16 * 8 and rows.max() - rows.min() == 15 and cols.max() - cols.min() == 7


def test_families_are_averaged_separately():
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    images[2:] = 0  # two flat images: the mean fill is exact on them
    rows = evaluate({}, images, (16, 16), families=["noise", "noise", "flat", "flat"])
    hole = [r for r in rows if r["masks"] == "centre" and r["region"] == "hole"]
    fill = {r["group"]: r for r in hole if r["method"] == "mean fill"}
    assert fill["flat"]["mean_l1"] == 0 and fill["flat"]["n"] == 2
    assert fill["all"]["mean_l1"] == pytest.approx(fill["noise"]["mean_l1"] / 2)


def test_evaluate_command_writes_tables(tmp_path, capsys):
    assert main(["evaluate", "--n", "5", "--image-size", "32", "32", "--hole-size", "16", "16", "--out",
                 str(tmp_path)]) == 0  # fmt: skip
    text = (tmp_path / "results.md").read_text()
    assert "| mean fill |" in text and "centre masks, hole" in text and (tmp_path / "results.csv").is_file()
    assert "hole mean L1 by family" in text and "| method | all | stripes | bricks | dots | landscape | photo |" in text
    assert "wrote" in capsys.readouterr().out


def test_holdout_command_draws_a_model_s_fills(tmp_path, capsys):
    out = tmp_path / "fills.png"
    assert main(["holdout", "--n", "2", "--image-size", "32", "32", "--hole-size", "8", "8", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and str(out) in capsys.readouterr().out
    assert main(["holdout", "--out", str(tmp_path / "fills.txt")]) == 2
