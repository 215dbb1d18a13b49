"""Reading images and masks: as displayed (EXIF orientation), every common mode, and one clear error per bad file."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from deepfill_min.cli import main
from deepfill_min.data import ImageFiles
from deepfill_min.files import image_format
from deepfill_min.generator import Generator
from deepfill_min.images import open_image, read_image, read_mask
from deepfill_min.weights import save_generator

ORIENTATION = 0x0112


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _save_rotated(rgb: np.ndarray, path, orientation: int = 6, fmt: str = "JPEG") -> np.ndarray:
    """Store `rgb` as a phone does: the sensor's pixels plus an EXIF tag; returns the pixels stored in the file.

    Orientation 6 means "rotate 90° clockwise to display", so the file holds the displayed image turned 90° counter-
    clockwise (8: the other way; 3: 180°).
    """
    undo = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
    stored = Image.fromarray(rgb).transpose(undo[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    stored.save(path, format=fmt, exif=exif.tobytes(), **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))
    return np.asarray(stored)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_like_a_viewer(tmp_path, orientation):
    shown = _rgb(24, 40)
    stored = _save_rotated(shown, tmp_path / "p.png", orientation, fmt="PNG")  # lossless: exact pixels
    assert stored.shape != shown.shape or orientation == 3
    assert np.array_equal(read_image(tmp_path / "p.png"), shown)


def test_rotated_phone_photo_inpaints_at_the_displayed_size(tmp_path):
    shown = _rgb(48, 72, seed=1)  # landscape as displayed; the JPEG stores it as 72 x 48 portrait
    _save_rotated(shown, tmp_path / "photo.jpg", 6)
    with Image.open(tmp_path / "photo.jpg") as raw:
        assert raw.size == (48, 72)  # what a reader that ignores the tag would see
    mask = np.zeros((48, 72), np.uint8)
    mask[10:30, 20:50] = 255  # drawn on the picture as every viewer shows it
    Image.fromarray(mask).save(tmp_path / "mask.png")
    torch.manual_seed(0)
    G = Generator(8)
    save_generator(G.state_dict(), {"cnum": 8}, "rgb", tmp_path / "g.safetensors")
    out = tmp_path / "out.png"
    assert main(["inpaint", "--checkpoint", str(tmp_path / "g.safetensors"), "--image", str(tmp_path / "photo.jpg"),
                 "--mask", str(tmp_path / "mask.png"), "--out", str(out)]) == 0  # fmt: skip
    result, displayed = np.asarray(Image.open(out)), read_image(tmp_path / "photo.jpg")
    hole = mask > 0
    assert result.shape == (48, 72, 3)
    assert np.array_equal(result[~hole], displayed[~hole])  # the known pixels are where the viewer shows them
    assert np.abs(displayed.astype(int) - shown).mean() < 3  # and they are the photo, not a rotated copy


def test_rotated_mask_is_rotated_too(tmp_path):
    hole = np.zeros((20, 36), bool)
    hole[2:9, 5:30] = True
    _save_rotated(np.repeat(hole[..., None] * np.uint8(255), 3, axis=2), tmp_path / "m.png", 8, fmt="PNG")
    assert np.array_equal(read_mask(tmp_path / "m.png"), hole)


def _modes() -> dict:
    gray = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    gray3 = np.repeat(gray[..., None], 3, 2)
    bits = np.repeat(((gray > 127) * 255).astype(np.uint8)[..., None], 3, 2)
    rgb = _rgb(16, 16, seed=2)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    rgba = np.dstack([rgb, gray])
    sixteen = (gray.astype(np.uint16) * 257).astype(np.uint16)
    return {
        "L": (Image.fromarray(gray, "L"), "PNG", gray3),
        "1": (Image.fromarray(gray > 127).convert("1"), "PNG", bits),
        "LA": (Image.fromarray(np.dstack([gray, gray[::-1]]), "LA"), "PNG", gray3),
        "P": (Image.fromarray(rgb).quantize(256), "PNG", None),
        "RGBA": (Image.fromarray(rgba, "RGBA"), "PNG", rgb),
        "I;16": (Image.fromarray(sixteen), "PNG", gray3),
        "I;16 TIFF": (Image.fromarray(sixteen), "TIFF", gray3),
        "CMYK": (cmyk, "TIFF", np.asarray(cmyk.convert("RGB"))),
        "CMYK JPEG": (cmyk, "JPEG", None),
        "RGB 16-bit PNG": (None, "PNG16", rgb),
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(_modes()))
def test_every_common_mode_reads_as_8_bit_rgb(tmp_path, name):
    img, fmt, expected = _modes()[name]
    path = tmp_path / "img.bin"
    if fmt == "PNG16":  # Pillow cannot write 16-bit colour: a minimal PNG writer (RGB, 16 bits per channel)
        path.write_bytes(_png16(expected.astype(np.uint16) * 257))
    else:
        img.save(path, format=fmt)
    rgb = read_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    if expected is not None:
        assert np.array_equal(rgb, expected), name
    else:
        assert rgb.std() > 20  # a real picture, not a constant


def _png16(rgb16: np.ndarray) -> bytes:
    import struct  # noqa: PLC0415
    import zlib  # noqa: PLC0415

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = rgb16.shape
    raw = b"".join(b"\0" + rgb16[i].astype(">u2").tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_sixteen_bit_mask_and_palette_transparency_mask(tmp_path):
    hole = np.zeros((12, 20), bool)
    hole[3:8, 4:15] = True
    Image.fromarray((hole * 60000).astype(np.uint16)).save(tmp_path / "m16.png")  # 60000/257 = 233 > 127.5
    assert np.array_equal(read_mask(tmp_path / "m16.png"), hole)
    Image.fromarray((hole * 20000).astype(np.uint16)).save(tmp_path / "dark16.png")  # 78: below the threshold
    assert not read_mask(tmp_path / "dark16.png").any()
    pal = Image.fromarray(hole.astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 0, 0, 0])
    pal.save(tmp_path / "pal.png", transparency=0)  # index 0 (the known part) transparent: alpha = hole
    assert np.array_equal(read_mask(tmp_path / "pal.png"), hole)


def _bad_files(tmp_path) -> dict:
    png = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(png, format="PNG")
    jpg = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(jpg, format="JPEG")
    files = {
        "empty": b"",
        "text": b"hello, I am not an image\n",
        "truncated png": png.getvalue()[: len(png.getvalue()) // 2],
        "truncated jpeg": jpg.getvalue()[:400],
        "png header only": png.getvalue()[:40],
        "garbage after png signature": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "html": b"<!doctype html><html><body>404</body></html>",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.png"
        paths[name].write_bytes(data)
    Image.fromarray(np.zeros((4, 4), np.float32), "F").save(tmp_path / "float.tif")
    paths["float tiff"] = tmp_path / "float.tif"
    (tmp_path / "folder.png").mkdir()
    paths["a folder"] = tmp_path / "folder.png"
    return paths


def test_every_undecodable_file_is_a_value_error_naming_it(tmp_path):
    for name, path in _bad_files(tmp_path).items():
        for read in (read_image, read_mask):
            with pytest.raises(ValueError) as caught:
                read(path)
            message = str(caught.value)
            assert str(path) in message and "\n" not in message, (name, message)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_image(tmp_path / "nowhere.png")


def test_decompression_bombs_are_refused_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 = 4096 > 2 x 1000: Pillow's error, not a warning
    with pytest.raises(ValueError, match="too large to decode safely"):
        read_image(tmp_path / "big.png")


def test_training_folders_skip_bad_files_and_read_rotated_ones_upright(tmp_path):
    shown = _rgb(32, 48, seed=3)
    _save_rotated(shown, tmp_path / "a.png", 6, fmt="PNG")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata: not listed at all
    data = ImageFiles(tmp_path, image_size=(32, 48))
    assert [p.name for p in data.files] == ["a.png", "b.png"]
    with pytest.warns(UserWarning, match="b.png is empty"):
        x = data.load(1)  # b.png is skipped: the next readable image, a.png, upright
    assert torch.equal(x, torch.from_numpy(shown).permute(2, 0, 1).float() / 127.5 - 1)


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.png", "PNG"), ("b.JPG", "JPEG"), ("c.jpeg", "JPEG"), ("d.webp", "WEBP"), ("e.tif", "TIFF")]
)
def test_output_format_from_the_suffix_common_and_plugin_formats(name, fmt):
    # .png/.jpg come from Pillow's preloaded plugins, .webp/.tif only after every plugin is registered
    assert image_format(name) == fmt


def test_unknown_output_suffix_is_one_line_naming_the_argument():
    for bad in ("out.xyz", "out"):
        with pytest.raises(ValueError, match=r"^--out out.*: unknown image format .*; use one of \.png, \.jpg"):
            image_format(bad)
