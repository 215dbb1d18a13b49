"""The command line: the attention demo, training from the CLI, and clear errors with exit status 2."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest
import small_runs
import torch
from PIL import Image

from deepfill_min.cli import console, main
from deepfill_min.demo import BUILTIN_IMAGES, demo_image, fill_hole


@pytest.mark.parametrize("name", sorted(BUILTIN_IMAGES))
def test_demo_images_are_deterministic_and_in_range(name):
    x = demo_image(name, 32)
    assert x.shape == (1, 3, 32, 32) and x.min() >= -1 and x.max() <= 1 and torch.equal(x, demo_image(name, 32))


def test_fill_keeps_known_pixels_and_changes_the_hole():
    x = demo_image("bricks", 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 10:22] = 1
    for official in (True, False):
        filled, offsets = fill_hole(x, mask, 2, 10.0, official)
        assert torch.equal(filled * (1 - mask), x * (1 - mask))
        assert not torch.equal(filled * mask, torch.zeros_like(x)) and offsets.shape == (1, 2, 16, 16)
    with pytest.raises(ValueError, match="passes"):
        fill_hole(x, mask, 0, 10.0, True)


def test_attention_demo_command_writes_the_figure(tmp_path, capsys):
    image = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "demo.png"
    assert main(["attention-demo", "--image", "dots", str(image), "--size", "32", "--passes", "1", "--out",
                 str(out)]) == 0  # fmt: skip
    assert out.is_file() and "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["attention-demo", "--image", "missing.png"], "neither a built-in image"),
        (["attention-demo", "--size", "30"], "multiple of 8"),
        (["attention-demo", "--size", "32", "--hole", "0", "0", "40", "8"], "must lie inside"),
        (["train", "batch_size=0"], "batch_size must be at least 1"),
        (["train", "colour=red"], "unknown config keys"),
        (["train", "--preset", "places2-256"], "needs data="),
        (["train", "--config", "nope.yaml"], "config file nope.yaml does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, argv, message):
    if argv[0] == "train":
        argv = [*argv, "--run-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_train_command_runs_and_resumes(tmp_path, capsys):
    small = [*small_runs.SMALL, "d_steps=1", "max_iters=1", "sample_every=1"]
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *small]) == 0
    assert "trivial fill" in capsys.readouterr().out
    assert main(["train", "--run-dir", str(run), *small]) == 2  # already has checkpoints
    assert main(["train", "--run-dir", str(run), "--resume", "max_iters=2"]) == 0
    assert (run / "ckpt_00000002.pt").is_file()


def test_the_command_returns_mains_status_and_exits_without_the_final_collection(tmp_path, monkeypatch, capsys):
    """`console` (the ``deepfill-min`` script, `test_packaging`): main's exit status, every live object frozen."""
    missing = str(tmp_path / "missing.png")
    monkeypatch.setattr(sys, "argv", ["deepfill-min", "inpaint", "--image", missing, "--mask", missing, "--out",
                                      str(tmp_path / "out.png")])  # fmt: skip
    before = gc.get_freeze_count()
    try:
        assert console() == 2 and "missing.png" in capsys.readouterr().err
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
