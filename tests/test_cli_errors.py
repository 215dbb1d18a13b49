"""Bad input to every subcommand: exit status 2, one line on stderr, no traceback, and no output written.

The cases are what an adversarial user hands the command line: missing, empty, truncated and foreign files, folders
where files go (and the reverse), outputs that would overwrite inputs, impossible sizes and values, damaged
TensorFlow checkpoints. Each runs in-process through `main` (argparse's own exits included); two run as real
processes to check the exit status and the absence of a traceback end to end.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import small_runs
import torch
import yaml
from PIL import Image

from deepfill_min.checkpoint import save_atomic
from deepfill_min.cli import main
from deepfill_min.config import make_config, to_dict
from deepfill_min.generator import Generator
from deepfill_min.weights import save_generator

TF_FIXTURE = Path(__file__).parent / "fixtures" / "tf_checkpoint"


def _inputs(root: Path) -> None:
    """Every input file the cases refer to, by name, under `root/in`."""
    d = root / "in"
    (d / "imgs").mkdir(parents=True)
    (d / "masks").mkdir()
    (d / "empty_dir").mkdir()
    (d / "folder.png").mkdir()
    rgb = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(d / "img.png")
    Image.fromarray(rgb[:4, :4]).save(d / "tiny.png")
    Image.fromarray(rgb).save(d / "imgs" / "a.png")
    hole = np.zeros((40, 48), np.uint8)
    hole[10:30, 12:36] = 255
    Image.fromarray(hole).save(d / "mask.png")
    Image.fromarray(hole).save(d / "masks" / "a.png")
    Image.fromarray(hole[:, :40]).save(d / "mask_small.png")
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(d / "mask_full.png")
    Image.fromarray(np.pad(np.full((2, 2), 255, np.uint8), 1)).save(d / "mask_tiny.png")
    png = (d / "img.png").read_bytes()
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image\n")
    (d / "notes.txt").write_text("hello\n")
    (d / "binary.yaml").write_bytes(bytes(range(256)))
    (d / "bad.yaml").write_text("batch_size: [1,\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "binary.flist").write_bytes(b"\xff\xfe\x00garbage")
    torch.manual_seed(0)
    cfg = to_dict(make_config("tiny", overrides=[*small_runs.SMALL]))
    save_atomic({"generator": Generator(8).state_dict(), "config": cfg, "step": 1}, d / "good.pt")
    save_generator(Generator(8, attention=False).state_dict(), cfg, "rgb", d / "baseline.safetensors")
    save_atomic({"weights": torch.zeros(3)}, d / "foreign.pt")
    good = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(good[: len(good) // 3])
    (d / "empty.pt").write_bytes(b"")
    with zipfile.ZipFile(d / "other.zip.pt", "w") as z:
        z.writestr("hello.txt", "a zip, but not a checkpoint")
    (d / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    run = d / "run_no_ckpt"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "run_bad_yaml").mkdir()
    (d / "run_bad_yaml" / "config.yaml").write_text(":\n  - [")
    (d / "bad_images").mkdir()
    (d / "bad_images" / "x.png").write_bytes(b"junk")
    (d / "file_not_dir").write_text("x")
    tf = d / "tf"
    shutil.copytree(TF_FIXTURE, tf / "good")
    (tf / "no_state").mkdir()
    shutil.copytree(TF_FIXTURE, tf / "bad_state")
    (tf / "bad_state" / "checkpoint").write_bytes(b"\x00\x01 nothing useful")
    shutil.copytree(TF_FIXTURE, tf / "damaged_index")
    index = bytearray((tf / "damaged_index" / "snap-7.index").read_bytes())
    index[10:200] = bytes(190)  # keep the magic, ruin the blocks
    (tf / "damaged_index" / "snap-7.index").write_bytes(bytes(index))
    shutil.copytree(TF_FIXTURE, tf / "short_data")
    data = tf / "short_data" / "snap-7.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    shutil.copytree(TF_FIXTURE, tf / "no_data")
    (tf / "no_data" / "snap-7.data-00000-of-00001").unlink()


PAINT = ["inpaint", "--checkpoint", "in/good.pt", "--image", "in/img.png", "--mask", "in/mask.png"]
CASES = {
    # attention-demo
    "demo: unknown image": ["attention-demo", "--image", "in/missing.png", "--out", "out/d.png"],
    "demo: corrupt image": ["attention-demo", "--image", "in/truncated.png", "--out", "out/d.png"],
    "demo: size not a multiple of 8": ["attention-demo", "--size", "30", "--out", "out/d.png"],
    "demo: size not a number": ["attention-demo", "--size", "big", "--out", "out/d.png"],
    "demo: negative size": ["attention-demo", "--size", "-8", "--out", "out/d.png"],
    "demo: hole outside": ["attention-demo", "--size", "32", "--hole", "0", "0", "40", "8", "--out", "out/d.png"],
    "demo: zero passes": ["attention-demo", "--passes", "0", "--out", "out/d.png"],
    "demo: nan scale": ["attention-demo", "--softmax-scale", "nan", "--out", "out/d.png"],
    "demo: unknown figure format": ["attention-demo", "--out", "out/d.xyz"],
    "demo: out is a folder": ["attention-demo", "--out", "in/folder.png"],
    # train
    "train: zero batch": ["train", "--run-dir", "out/run", "batch_size=0"],
    "train: unknown key": ["train", "--run-dir", "out/run", "colour=red"],
    "train: unknown preset": ["train", "--run-dir", "out/run", "--preset", "huge"],
    "train: preset needs data": ["train", "--run-dir", "out/run", "--preset", "places2-256"],
    "train: missing config file": ["train", "--run-dir", "out/run", "--config", "in/nope.yaml"],
    "train: binary config file": ["train", "--run-dir", "out/run", "--config", "in/binary.yaml"],
    "train: invalid YAML": ["train", "--run-dir", "out/run", "--config", "in/bad.yaml"],
    "train: YAML list": ["train", "--run-dir", "out/run", "--config", "in/list.yaml"],
    "train: override not YAML": ["train", "--run-dir", "out/run", "image_size=[64,"],
    "train: override without =": ["train", "--run-dir", "out/run", "batch_size"],
    "train: negative lr": ["train", "--run-dir", "out/run", "lr=-1"],
    "train: nan lr": ["train", "--run-dir", "out/run", "lr=.nan"],
    "train: odd image size": ["train", "--run-dir", "out/run", "image_size=[30,30]"],
    "train: even fuse_k": ["train", "--run-dir", "out/run", "fuse_k=4"],
    "train: negative hole": ["train", "--run-dir", "out/run", "hole_size=[-8,16]"],
    "train: margin too wide": ["train", "--run-dir", "out/run", "margin=[20,20]"],
    "train: unknown device": ["train", "--run-dir", "out/run", "device=banana"],
    "train: cuda without a GPU": ["train", "--run-dir", "out/run", "device=cuda", *small_runs.SMALL],
    "train: missing data": ["train", "--run-dir", "out/run", "data=in/nowhere", *small_runs.SMALL],
    "train: no images in data": ["train", "--run-dir", "out/run", "data=in/empty_dir", *small_runs.SMALL],
    "train: only corrupt images": ["train", "--run-dir", "out/run", "data=in/bad_images", *small_runs.SMALL],
    "train: binary flist": ["train", "--run-dir", "out/run", "data=in/binary.flist", *small_runs.SMALL],
    "train: run dir is a file": ["train", "--run-dir", "in/file_not_dir"],
    "train: resume without config": ["train", "--run-dir", "in/empty_dir", "--resume"],
    "train: resume, bad config.yaml": ["train", "--run-dir", "in/run_bad_yaml", "--resume"],
    "train: resume, no checkpoint": ["train", "--run-dir", "in/run_no_ckpt", "--resume"],
    # inpaint
    "inpaint: missing checkpoint": [*PAINT[:2], "in/none.pt", *PAINT[3:], "--out", "out/o.png"],
    "inpaint: text checkpoint": [*PAINT[:2], "in/notes.txt", *PAINT[3:], "--out", "out/o.png"],
    "inpaint: empty checkpoint": [*PAINT[:2], "in/empty.pt", *PAINT[3:], "--out", "out/o.png"],
    "inpaint: truncated checkpoint": [*PAINT[:2], "in/truncated.pt", *PAINT[3:], "--out", "out/o.png"],
    "inpaint: foreign checkpoint": [*PAINT[:2], "in/foreign.pt", *PAINT[3:], "--out", "out/o.png"],
    "inpaint: zip, not a checkpoint": [*PAINT[:2], "in/other.zip.pt", *PAINT[3:], "--out", "out/o.png"],
    "inpaint: junk safetensors": [*PAINT[:2], "in/junk.safetensors", *PAINT[3:], "--out", "out/o.png"],
    "inpaint: image as checkpoint": [*PAINT[:2], "in/img.png", *PAINT[3:], "--out", "out/o.png"],
    "inpaint: folder without checkpoints": [*PAINT[:2], "in/empty_dir", *PAINT[3:], "--out", "out/o.png"],
    "inpaint: missing image": [*PAINT[:4], "in/none.png", *PAINT[5:], "--out", "out/o.png"],
    "inpaint: truncated image": [*PAINT[:4], "in/truncated.png", *PAINT[5:], "--out", "out/o.png"],
    "inpaint: empty image": [*PAINT[:4], "in/empty.png", *PAINT[5:], "--out", "out/o.png"],
    "inpaint: text image": [*PAINT[:4], "in/text.png", *PAINT[5:], "--out", "out/o.png"],
    "inpaint: corrupt mask": [*PAINT[:6], "in/truncated.png", "--out", "out/o.png"],
    "inpaint: missing mask": [*PAINT[:6], "in/none.png", "--out", "out/o.png"],
    "inpaint: mask of another size": [*PAINT[:6], "in/mask_small.png", "--out", "out/o.png"],
    "inpaint: mask covers everything": [*PAINT[:6], "in/mask_full.png", "--out", "out/o.png"],
    "inpaint: official on a 4x4 image": [*PAINT[:4], "in/tiny.png", "--mask", "in/mask_tiny.png", "--official",
                                         "--out", "out/o.png"],  # fmt: skip
    "inpaint: unknown output format": [*PAINT, "--out", "out/o.xyz"],
    "inpaint: output without suffix": [*PAINT, "--out", "out/o"],
    "inpaint: output over the image": [*PAINT, "--out", "in/img.png"],
    "inpaint: output over the mask": [*PAINT, "--out", "in/mask.png"],
    "inpaint: output is a folder": [*PAINT, "--out", "in/folder.png"],
    "inpaint: output under a file": [*PAINT, "--out", "in/file_not_dir/o.png"],
    "inpaint: two outputs, one path": [*PAINT, "--out", "out/o.png", "--coarse-out", "out/o.png"],
    "inpaint: flow of a baseline": [*PAINT[:2], "in/baseline.safetensors", *PAINT[3:], "--out", "out/o.png",
                                    "--flow-out", "out/f.png"],  # fmt: skip
    "inpaint: unknown device": [*PAINT, "--out", "out/o.png", "--device", "banana"],
    "inpaint: cuda without a GPU": [*PAINT, "--out", "out/o.png", "--device", "cuda"],
    "inpaint: nan threshold": [*PAINT, "--out", "out/o.png", "--threshold", "nan"],
    "inpaint: threshold out of range": [*PAINT, "--out", "out/o.png", "--threshold", "300"],
    "inpaint: mask channel 5": [*PAINT, "--out", "out/o.png", "--mask-channel", "5"],
    "inpaint: folder image, file mask": [*PAINT[:4], "in/imgs", "--mask", "in/mask.png", "--out", "out/dir"],
    "inpaint: folder into itself": [*PAINT[:4], "in/imgs", "--mask", "in/masks", "--out", "in/imgs"],
    "inpaint: masks in the image folder": [*PAINT[:4], "in/imgs", "--mask", "in/imgs", "--out", "out/dir"],
    "inpaint: folder with no images": [*PAINT[:4], "in/empty_dir", "--mask", "in/masks", "--out", "out/dir"],
    "inpaint: missing --out": PAINT,
    # evaluate
    "evaluate: missing checkpoint": ["evaluate", "--checkpoint", "in/none.pt", "--out", "out/ev"],
    "evaluate: corrupt checkpoint": ["evaluate", "--checkpoint", "mine=in/truncated.pt", "--out", "out/ev"],
    "evaluate: same label twice": ["evaluate", "--checkpoint", "a=in/good.pt", "a=in/good.pt", "--out", "out/ev"],
    "evaluate: zero images": ["evaluate", "--n", "0", "--out", "out/ev"],
    "evaluate: odd size": ["evaluate", "--image-size", "30", "30", "--out", "out/ev"],
    "evaluate: hole too big": ["evaluate", "--hole-size", "64", "64", "--out", "out/ev"],
    "evaluate: missing data": ["evaluate", "--data", "in/nowhere", "--out", "out/ev"],
    "evaluate: data without images": ["evaluate", "--data", "in/empty_dir", "--out", "out/ev"],
    "evaluate: out is a file": ["evaluate", "--out", "in/file_not_dir"],
    # convert-tf
    "convert-tf: missing": ["convert-tf", "in/tf/nowhere", "--out", "out/c.pt"],
    "convert-tf: no state file": ["convert-tf", "in/tf/no_state", "--out", "out/c.pt"],
    "convert-tf: binary state file": ["convert-tf", "in/tf/bad_state", "--out", "out/c.pt"],
    "convert-tf: damaged index": ["convert-tf", "in/tf/damaged_index", "--out", "out/c.pt"],
    "convert-tf: short data file": ["convert-tf", "in/tf/short_data", "--out", "out/c.safetensors"],
    "convert-tf: missing data file": ["convert-tf", "in/tf/no_data", "--out", "out/c.pt"],
    "convert-tf: unknown out suffix": ["convert-tf", "in/tf/good", "--out", "out/c.h5"],
    "convert-tf: not a checkpoint": ["convert-tf", "in/img.png", "--out", "out/c.pt"],
    # export
    "export: missing": ["export", "in/none.pt", "--out", "out/e.safetensors"],
    "export: corrupt": ["export", "in/truncated.pt", "--out", "out/e.safetensors"],
    "export: foreign": ["export", "in/foreign.pt", "--out", "out/e.safetensors"],
    "export: wrong out suffix": ["export", "in/good.pt", "--out", "out/e.pt"],
    "export: out is a folder": ["export", "in/good.pt", "--out", "in/empty_dir"],
    # prepare-data
    "prepare-data: missing source": ["prepare-data", "in/nowhere", "out/p"],
    "prepare-data: no images": ["prepare-data", "in/empty_dir", "out/p"],
    "prepare-data: only bad images": ["prepare-data", "in/bad_images", "out/p"],
    "prepare-data: into itself": ["prepare-data", "in/imgs", "in/imgs/small"],
    "prepare-data: zero size": ["prepare-data", "in/imgs", "out/p", "--size", "0"],
    # app (every check happens before the server starts)
    "app: missing checkpoint": ["app", "--checkpoint", "in/none.pt", "--port", "0"],
    "app: foreign checkpoint": ["app", "--checkpoint", "in/foreign.pt", "--port", "0"],
    "app: port out of range": ["app", "--port", "70000"],
    "app: port not a number": ["app", "--port", "http"],
    "app: zero max side": ["app", "--max-side", "0"],
    "app: no cuda": ["app", "--device", "cuda:7", "--port", "0"],
    # the command itself
    "no subcommand": [],
    "unknown subcommand": ["paint"],
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-errors")
    _inputs(root)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(inputs, case, monkeypatch, capsys):
    monkeypatch.chdir(inputs)
    before = _files(inputs)
    try:
        status = main(CASES[case])
    except SystemExit as done:  # argparse's usage errors
        status = done.code
    err = capsys.readouterr().err
    assert status == 2, (case, err)
    assert err.count("\n") == 1 and err.startswith("deepfill-min: error: "), (case, err)
    assert _files(inputs) == before, f"{case}: files were written or changed"
    assert not (inputs / "out").exists(), case


def test_folder_mode_processes_the_good_pairs_and_lists_the_bad(tmp_path, capsys):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    rgb = (np.random.default_rng(1).random((40, 48, 3)) * 255).astype(np.uint8)
    hole = np.zeros((40, 48), np.uint8)
    hole[5:20, 5:30] = 255
    for name in ("a.png", "b.jpg", "c.png", "d.png"):
        Image.fromarray(rgb).save(imgs / name)
    Image.fromarray(hole).save(masks / "a.png")
    Image.fromarray(hole).save(masks / "b.png")  # same stem, another suffix: paired
    Image.fromarray(hole[:30]).save(masks / "c.png")  # another size
    (imgs / "e.png").write_bytes(b"broken")
    Image.fromarray(hole).save(masks / "e.png")
    torch.manual_seed(0)
    save_generator(Generator(8).state_dict(), {}, "rgb", tmp_path / "g.safetensors")
    out = tmp_path / "out"
    status = main(["inpaint", "--checkpoint", str(tmp_path / "g.safetensors"), "--image", str(imgs), "--mask",
                   str(masks), "--out", str(out), "--flow-out", str(tmp_path / "flows")])  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert status == 2
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]
    assert sorted(p.name for p in (tmp_path / "flows").iterdir()) == ["a.png", "b.jpg"]
    assert [line.split(": ")[2] for line in lines[:-1]] == ["d.png", "c.png", "e.png"]
    assert "no mask named d.*" in lines[0] and "is 48x30 but image" in lines[1] and "not an image" in lines[2]
    assert lines[-1] == f"deepfill-min: error: 3 of 5 images failed; the other 2 were written to {out}"
    with Image.open(out / "b.jpg") as jpg:
        assert jpg.format == "JPEG" and jpg.size == (48, 40)


def test_an_output_that_fails_to_write_leaves_nothing_behind(tmp_path, monkeypatch):
    from deepfill_min import files  # noqa: PLC0415

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", explode)
    with pytest.raises(OSError, match="disk full"):
        files.write_image(np.zeros((8, 8, 3), np.uint8), tmp_path / "o.png")
    assert list(tmp_path.iterdir()) == []


def test_outputs_keep_the_usual_permissions(tmp_path):
    from deepfill_min.files import write_image  # noqa: PLC0415

    path = write_image(np.zeros((8, 8, 3), np.uint8), tmp_path / "o.png")
    reference = tmp_path / "plain"
    reference.write_bytes(b"")
    assert path.stat().st_mode == reference.stat().st_mode


@pytest.mark.parametrize("argv", [["inpaint", "--checkpoint", "in/empty.pt", "--image", "in/img.png", "--mask",
                                   "in/mask.png", "--out", "out/o.png"], ["inpaint", "--image", "x"]])  # fmt: skip
def test_a_real_process_exits_2_without_a_traceback(inputs, argv):
    done = subprocess.run([sys.executable, "-m", "deepfill_min", *argv], cwd=inputs, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("deepfill-min: error: ")


def test_an_empty_mask_warns_in_one_line_and_copies_the_image(inputs, tmp_path, capsys):
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(tmp_path / "none.png")
    out = tmp_path / "o.png"
    assert main(["inpaint", "--checkpoint", str(inputs / "in/good.pt"), "--image", str(inputs / "in/img.png"),
                 "--mask", str(tmp_path / "none.png"), "--out", str(out)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deepfill-min: warning: mask") and "is empty" in err
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(inputs / "in/img.png")))
