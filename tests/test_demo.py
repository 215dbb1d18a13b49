"""Built-in images and the attention demo: determinism, validation, the figure, and `python -m deepfill_min`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image

from deepfill_min.builtin import BUILTIN_IMAGES, builtin_image
from deepfill_min.demo import attention_demo, demo_image, fill_hole


@pytest.mark.parametrize("name", BUILTIN_IMAGES)
def test_builtin_images_are_deterministic_in_range_and_not_flat(name):
    img = builtin_image(name, 48)
    assert img.shape == (48, 48, 3) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1 and img.std() > 0.05
    np.testing.assert_array_equal(img, builtin_image(name, 48))


def test_hopper_is_the_centre_square_of_the_photo():
    img = builtin_image("hopper", 64)
    assert builtin_image().shape == (256, 256, 3)
    # the photo (512x600, portrait) keeps its aspect: a centre square is not a squashed whole
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as photo:
        squashed = np.asarray(photo.convert("RGB").resize((64, 64), Image.BILINEAR), dtype=np.float32) / 255
    assert np.abs(img - squashed).mean() > 0.02


@pytest.mark.parametrize(("name", "size"), [("lena", 64), ("Hopper", 64)])
def test_unknown_names_raise(name, size):
    with pytest.raises(ValueError, match=f"name must be one of {', '.join(BUILTIN_IMAGES)}, got '{name}'"):
        builtin_image(name, size)


@pytest.mark.parametrize("size", [0, 60, -8, 64.0, True])
def test_bad_sizes_raise(size):
    with pytest.raises(ValueError, match="size must be a positive multiple of 8"):
        builtin_image("bricks", size)


def test_one_official_pass_fills_the_interior_with_a_faded_repeating_average():
    x = demo_image("hopper", 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    filled, offsets = fill_hole(x, mask, 1, 10.0, official=True)
    assert torch.equal(filled * (1 - mask), x * (1 - mask)) and offsets.shape == (1, 2, 32, 32)
    inner = filled[..., 24:40, 24:40]  # 8 pixels from the border: all-zero queries, uniform weights
    torch.testing.assert_close(inner[..., 2:, :], inner[..., :-2, :], rtol=0, atol=1e-6)
    torch.testing.assert_close(inner[..., :, 2:], inner[..., :, :-2], rtol=0, atol=1e-6)
    hole_std = filled[..., 16:48, 16:48].std((2, 3))
    assert (inner.std((2, 3)) < 0.02).all() and (hole_std > 0.05).all()  # the border does bring structure in
    known_mean = (x * (1 - mask)).sum((2, 3)) / (1 - mask).sum()
    assert (inner.mean((2, 3)).abs() < known_mean.abs()).all()  # faded toward 0 (mid-grey)


def test_attention_demo_writes_a_png_for_one_image_file(tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray((builtin_image("bricks", 40) * 255).astype(np.uint8)).save(photo)
    out = attention_demo(str(photo), size=32, hole=(8, 4, 12, 20), passes=1, out=tmp_path / "a" / "b" / "demo.png")
    assert out == tmp_path / "a" / "b" / "demo.png"
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > png.height > 100  # one row of four panels


@pytest.mark.parametrize("hole", [(0, 0, 33, 8), (-1, 0, 8, 8), (4, 4, 0, 8), (30, 30, 4, 4)])
def test_holes_outside_the_image_are_refused(tmp_path, hole):
    with pytest.raises(ValueError, match="must lie inside the 32x32 image"):
        attention_demo("dots", 32, hole, out=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepfill_min", *args], capture_output=True, text=True, timeout=120)


def test_python_m_writes_the_figure(tmp_path):
    out = tmp_path / "figure.png"
    done = run_module("attention-demo", "--image", "landscape", "--size", "32", "--passes", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.is_file() and str(out) in done.stdout


def test_python_m_with_a_missing_image_exits_2_naming_it(tmp_path):
    missing = tmp_path / "no-such-photo.jpg"
    done = run_module("attention-demo", "--image", str(missing), "--size", "32", "--out", str(tmp_path / "x.png"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("deepfill-min: error:") and str(missing) in done.stderr
    assert not (tmp_path / "x.png").exists()
