"""Data: folders and .flist files, corrupt files, crops, colour order, the built-in images and their split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deepfill_min import photos
from deepfill_min.data import FAMILIES, BuiltinImages, ImageFiles, list_images, procedural_image
from deepfill_min.photos import available_photos, photo


def _write(path, h=40, w=60, value=200):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[..., 0] = value  # pure red
    Image.fromarray(arr).save(path)
    return path


def test_folder_is_read_recursively_and_flist_relative_to_its_folder(tmp_path):
    _write(tmp_path / "a" / "x.png")
    _write(tmp_path / "a" / "b" / "y.jpg")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path / "a")] == ["y.jpg", "x.png"]
    flist = tmp_path / "a" / "train.flist"
    flist.write_text("x.png\nb/y.jpg\n")
    assert [p.name for p in list_images(flist)] == ["x.png", "y.jpg"]


def test_empty_or_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        list_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_corrupt_files_are_skipped_with_a_warning_and_counted(tmp_path):
    _write(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    ds = ImageFiles(tmp_path, image_size=(32, 32))
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        x = ds[0]  # bad.png sorts first: the next readable image comes back
    assert x.shape == (3, 32, 32) and len(ds.skipped) == 1
    (tmp_path / "good.png").write_bytes(b"broken too")
    with pytest.raises(ValueError, match="none of the 2 images could be read"), pytest.warns(UserWarning):
        ImageFiles(tmp_path, image_size=(32, 32))[0]


def test_resize_crop_range_and_colour_order(tmp_path):
    _write(tmp_path / "r.png", h=40, w=60, value=255)
    rgb = ImageFiles(tmp_path, image_size=(32, 32))[0]
    assert rgb.shape == (3, 32, 32) and torch.allclose(rgb[0], torch.ones(32, 32)) and (rgb[1:] == -1).all()
    bgr = ImageFiles(tmp_path, image_size=(32, 32), color_order="bgr")[0]
    assert torch.equal(bgr, rgb.flip(0))
    crops = ImageFiles(tmp_path, image_size=(64, 64), random_crop=True)  # upscaled: short side 40 -> 64
    a = crops.load(0, torch.Generator().manual_seed(0))
    b = crops.load(0, torch.Generator().manual_seed(0))
    assert a.shape == (3, 64, 64) and torch.equal(a, b)
    with pytest.raises(ValueError, match="color_order"):
        ImageFiles(tmp_path, color_order="hsv")


def test_builtin_images_are_deterministic_varied_and_split():
    train, test = BuiltinImages("train", size=32, length=20), BuiltinImages("test", size=32, length=20)
    assert torch.equal(train[3], BuiltinImages("train", size=32)[3])
    assert train[0].shape == (3, 32, 32) and train[0].min() >= -1 and train[0].max() <= 1
    assert not any(torch.equal(a, b) for a in (train[i] for i in range(20)) for b in (test[j] for j in range(20)))
    assert len({round(float(train[i].std()), 3) for i in range(10)}) > 5  # not one picture repeated
    assert procedural_image(4, 32).shape == (32, 32, 3)  # the photo family
    with pytest.raises(ValueError, match="multiple of 8"):
        BuiltinImages(size=30)
    with pytest.raises(ValueError, match="split"):
        BuiltinImages("val")


def test_the_photo_family_crops_disjoint_photos_in_the_two_splits():
    train, test = available_photos("train"), available_photos("test")
    assert train and "hopper" in test and not set(train) & set(test)
    for name in (*train, *test):
        assert photo(name).shape[2] == 3 and photo(name).dtype == np.float32
    data = BuiltinImages("test", size=64)
    families = [data.family(i) for i in range(10)]
    assert families == list(FAMILIES) * 2
    assert BuiltinImages("train", size=64).photos == train


def test_without_the_photos_extra_the_training_split_says_so_and_keeps_five_families(monkeypatch):
    monkeypatch.setattr(photos, "_skimage_data", lambda: None)
    with pytest.warns(UserWarning, match="photos extra"):
        data = BuiltinImages("train", size=32, length=10)
    assert data.photos == () and [data.family(i) for i in (4, 9, 14)] == ["stripes", "bricks", "dots"]
    assert np.array_equal(data.load_uint8(9), np.rint(procedural_image(9, 32, ()) * 255).astype(np.uint8))
    assert BuiltinImages("test", size=32).photos == ("hopper",)  # matplotlib's photo is always there


def test_prepare_data_writes_a_smaller_upright_copy_and_a_file_list(tmp_path, capsys):
    from deepfill_min.cli import main  # noqa: PLC0415

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8)).save(src / "wide.jpg")
    Image.fromarray((rng.random((60, 50, 3)) * 255).astype(np.uint8)).save(src / "sub" / "small.bmp")
    (src / "broken.png").write_bytes(b"junk")
    assert main(["prepare-data", str(src), str(tmp_path / "dst"), "--size", "128", "--workers", "2"]) == 0
    assert "broken.png" in capsys.readouterr().err  # skipped with a warning, not fatal
    listed = (tmp_path / "dst" / "files.flist").read_text().split()
    assert listed == ["sub/small.png", "wide.jpg"]
    with Image.open(tmp_path / "dst" / "wide.jpg") as wide, Image.open(tmp_path / "dst" / "sub" / "small.png") as small:
        assert wide.size == (171, 128) and small.size == (50, 60)  # short side 128; small images are not enlarged
    data = ImageFiles(tmp_path / "dst" / "files.flist", image_size=(64, 64))
    assert len(data) == 2 and data.load(0).shape == (3, 64, 64)
