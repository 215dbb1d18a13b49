"""Inference: any size, mask formats, clear errors, the official pipeline's quirks, and the inpaint command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deepfill_min.checkpoint import save_atomic
from deepfill_min.cli import main
from deepfill_min.config import make_config, to_dict
from deepfill_min.generator import Generator
from deepfill_min.images import read_mask
from deepfill_min.inpaint import inpaint
from deepfill_min.weights import load_generator


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(cnum=8).eval()


def _image(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_any_size_is_padded_and_cropped_back_and_known_pixels_kept(generator):
    img = _image(333, 517)
    mask = np.zeros((333, 517), bool)
    mask[100:200, 150:300] = True
    result = inpaint(img, mask, generator, return_flow=True)
    assert result.image.shape == result.coarse.shape == result.flow.shape == (333, 517, 3)
    assert (result.image[~mask] == img[~mask]).all()
    assert not (result.image[mask] == img[mask]).all()


@pytest.mark.parametrize(("size", "hole"), [((61, 85), (40, 70, 21, 15)), ((100, 130), (70, 0, 30, 50)),
                                            ((9, 300), (3, 280, 6, 20)), ((45, 45), (0, 30, 45, 15))])  # fmt: skip
@pytest.mark.parametrize("full", [False, True])
def test_the_result_never_depends_on_the_pixels_under_the_hole(generator, size, hole, full):
    # holes at the bottom or right edge of images whose sides are not multiples of 8: the padding must not show
    # the model a reflection of what the hole hides
    img, other = _image(*size, seed=1), _image(*size, seed=2)
    mask = np.zeros(size, bool)
    t, l, h, w = hole
    mask[t : t + h, l : l + w] = True
    hidden = np.where(mask[..., None], other, img)  # the same known pixels, other pixels under the hole
    a, b = inpaint(img, mask, generator, full=full), inpaint(hidden, mask, generator, full=full)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.coarse[~mask], b.coarse[~mask])


def test_official_pipeline_crops_to_8_and_truncates(generator):
    # every value 0..255 among the known pixels: the float32 round trip and truncation lower 63 of them by one (§10)
    img = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(16, axis=0)
    img = np.pad(img, ((0, 5), (0, 7), (0, 0)))  # 21 x 263: cropped to 16 x 256
    mask = np.zeros(img.shape[:2], bool)
    mask[:2, 250:] = True
    out = inpaint(img, mask, generator, official=True).image
    assert out.shape == (16, 256, 3)
    known = ~mask[:16, :256]
    lowered = {int(v) for v in np.unique(img[:16, :256][known & (out[..., 0] != img[:16, :256, 0])][:, 0])}
    assert lowered == {v for v in range(256) if (np.float32(v) / np.float32(127.5) - 1 + 1) * np.float32(127.5) < v}
    assert len(lowered) == 63 and max(lowered) <= 63
    default = inpaint(img, mask, generator).image
    assert default.shape == img.shape and (default[~mask] == img[~mask]).all()  # rounding keeps known pixels


def test_mask_errors_and_the_empty_mask(generator):
    img = _image(32, 48)
    with pytest.raises(ValueError, match="mask is 40x32 but the image is 48x32"):
        inpaint(img, np.zeros((32, 40), bool), generator)
    with pytest.raises(ValueError, match="covers the whole image"):
        inpaint(img, np.ones((32, 48), bool), generator)
    with pytest.warns(UserWarning, match="empty"):
        assert (inpaint(img, np.zeros((32, 48), bool), generator).image == img).all()
    with pytest.raises(ValueError, match="uint8 RGB"):
        inpaint(img.astype(np.float32), np.zeros((32, 48), bool), generator)


@pytest.mark.parametrize("kind", ["gray", "red_channel", "alpha"])
def test_mask_files_in_every_form(tmp_path, kind):
    hole = np.zeros((20, 30), bool)
    hole[5:10, 8:20] = True
    if kind == "gray":
        img, channel = Image.fromarray((hole * 255).astype(np.uint8), "L"), "auto"
    elif kind == "red_channel":
        rgb = np.zeros((20, 30, 3), np.uint8)
        rgb[..., 0] = hole * 255
        img, channel = Image.fromarray(rgb), 0
    else:
        rgba = np.full((20, 30, 4), 255, np.uint8)
        rgba[..., :3] = 0
        rgba[..., 3] = np.where(hole, 255, 0)
        img, channel = Image.fromarray(rgba, "RGBA"), "auto"
    img.save(tmp_path / "m.png")
    assert (read_mask(tmp_path / "m.png", channel=channel) == hole).all()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_mask(tmp_path / "nope.png")


def test_inpaint_command_single_and_batch(tmp_path, generator):
    ckpt = tmp_path / "ckpt_00000001.pt"
    cfg = make_config("tiny", overrides=["cnum=8"])
    save_atomic({"generator": generator.state_dict(), "config": to_dict(cfg), "step": 1}, ckpt)
    loaded, order = load_generator(tmp_path)
    assert order == "rgb" and torch.equal(loaded.conv1.weight, generator.conv1.weight)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(2):
        Image.fromarray(_image(40, 56, i)).save(tmp_path / "imgs" / f"{i}.png")
        m = np.zeros((40, 56), np.uint8)
        m[10:30, 10:40] = 255
        Image.fromarray(m).save(tmp_path / "masks" / f"{i}.png")
    assert main(["inpaint", "--checkpoint", str(ckpt), "--image", str(tmp_path / "imgs" / "0.png"), "--mask",
                 str(tmp_path / "masks" / "0.png"), "--out", str(tmp_path / "o.png"), "--flow-out",
                 str(tmp_path / "flow.png")]) == 0  # fmt: skip
    assert Image.open(tmp_path / "o.png").size == (56, 40) and (tmp_path / "flow.png").is_file()
    assert main(["inpaint", "--checkpoint", str(tmp_path), "--image", str(tmp_path / "imgs"), "--mask",
                 str(tmp_path / "masks"), "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]
    assert main(["inpaint", "--checkpoint", str(tmp_path / "none.pt"), "--image", "a.png", "--mask", "b.png",
                 "--out", "c.png"]) == 2  # fmt: skip
    other = Generator(cnum=16)
    save_atomic({"generator": other.state_dict(), "config": to_dict(cfg), "step": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="its config says cnum=8 but its tensors have cnum=16"):
        load_generator(tmp_path / "bad.pt")
