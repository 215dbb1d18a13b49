"""The shipped model: it loads as "builtin", it is the model the committed log and figures describe, and the recipe
that made it (`make pretrained`) still produces that log."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfill_min import load_generator
from deepfill_min.cli import main
from deepfill_min.config import make_config
from deepfill_min.experiment import holdout_images
from deepfill_min.holdout import centre_mask, hole_l1
from deepfill_min.train import Trainer
from deepfill_min.weights import BUILTIN_FILE, generator_from_file

DOCS = Path(__file__).resolve().parents[1] / "docs" / "pretrained"


def test_the_builtin_model_is_the_preset_s_generator():
    G, color_order = load_generator("builtin")
    _, config, _ = generator_from_file("builtin")
    assert (G.conv1.out_channels, G.attention, color_order, config["preset"]) == (16, True, "rgb", "builtin-128")
    assert G.contextual_attention.kwargs["fuse_k"] == config["fuse_k"] == make_config("builtin-128").fuse_k
    assert BUILTIN_FILE.stat().st_size < 8 * 2**20  # a few MB inside the package


def test_the_builtin_model_gives_the_committed_held_out_figures():
    """docs/pretrained/holdout.json was measured on the model the package ships, not on another one."""
    report = json.loads((DOCS / "holdout.json").read_text())
    cfg = make_config("builtin-128")
    G, _ = load_generator("builtin")
    figures = hole_l1(G, holdout_images(cfg), centre_mask(cfg.image_size, cfg.hole_size))
    assert figures["model"] == pytest.approx(report["final"]["model"], abs=2e-4)
    assert figures["model"] < 0.75 * figures["mean_fill"]  # and it did learn


def test_the_recipe_reproduces_the_first_rows_of_the_committed_log(tmp_path):
    """The first iterations of `make pretrained` again: the same losses as docs/pretrained/log.csv. `make
    pretrained-check` compares 100 iterations to the last digit; here 2, to 1e-4 (bf16 kernels may differ on
    another CPU)."""
    with (DOCS / "log.csv").open() as f:
        committed = [row for row, _ in zip(csv.DictReader(f), range(2), strict=False)]
    trainer = Trainer(make_config("builtin-128", overrides=["max_iters=2", "num_workers=0"]), tmp_path)
    for row in committed:
        stats = trainer.iteration()
        assert stats["step"] == int(row["step"])
        for key in ("g_loss", "l1", "ae"):
            assert stats[key].item() == pytest.approx(float(row[key]), rel=1e-4), key


def test_inpaint_uses_the_builtin_model_by_default(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    mask = np.zeros((64, 80), np.uint8)
    mask[20:40, 30:50] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["inpaint", "--image", str(tmp_path / "img.png"), "--mask", str(tmp_path / "mask.png"),
                 "--out", str(tmp_path / "out.png")]) == 0  # fmt: skip
    out = np.asarray(Image.open(tmp_path / "out.png"))
    original = np.asarray(Image.open(tmp_path / "img.png"))
    assert np.array_equal(out[mask == 0], original[mask == 0])  # the known pixels are kept
    assert not np.array_equal(out[mask > 0], original[mask > 0])
