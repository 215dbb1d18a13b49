"""Weights from strangers: no file can run code on load, and .safetensors round-trips and refuses what does not fit.

The malicious checkpoints carry a real payload (a pickle whose unpickling creates a file), so these tests fail the
moment any loading path goes back to ``torch.load(weights_only=False)`` or to a plain unpickler.
"""

from __future__ import annotations

import builtins
import json
import pickle
import struct

import numpy as np
import pytest
import small_runs
import torch
import yaml

from deepfill_min.checkpoint import load_checkpoint, save_atomic
from deepfill_min.cli import main
from deepfill_min.config import make_config, to_dict
from deepfill_min.generator import Generator
from deepfill_min.inpaint import inpaint
from deepfill_min.weights import export_generator, load_generator, save_generator


class Payload:
    """Unpickling this runs ``open(marker, "w")``: the file appears iff the loader executed code."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').close()",))


def _cfg(cnum: int = 8) -> dict:
    return to_dict(make_config("tiny", overrides=[*small_runs.SMALL, f"cnum={cnum}"]))


def _malicious_files(folder, marker) -> dict:
    """The same payload in every container torch.load accepts, hidden where a checkpoint's parts go."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"generator": Payload(marker), "config": _cfg(), "step": 1}
    files = {}
    files["zip"] = folder / "zip.pt"
    torch.save(state, files["zip"])
    files["legacy"] = folder / "legacy.pt"
    torch.save(state, files["legacy"], _use_new_zipfile_serialization=False)
    files["raw pickle"] = folder / "raw.pt"
    files["raw pickle"].write_bytes(pickle.dumps(state, protocol=2))
    files["in the config"] = folder / "config.pt"
    torch.save({"generator": Generator(8).state_dict(), "config": {"cnum": Payload(marker)}, "step": 1},
               files["in the config"])  # fmt: skip
    files["named .safetensors"] = folder / "model.safetensors"
    files["named .safetensors"].write_bytes(files["zip"].read_bytes())
    return files


def _run_dir_with(path, source) -> None:
    """A training run directory whose newest checkpoint is `source` (what `train --resume` and run paths read)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(_cfg()))
    (path / "ckpt_00000001.pt").write_bytes(source.read_bytes())


def test_no_loading_path_runs_a_checkpoints_code(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    files = _malicious_files(tmp_path / "files", marker)
    image = tmp_path / "image.png"
    mask = tmp_path / "mask.png"
    from PIL import Image  # noqa: PLC0415

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), 6)).save(mask)
    for kind, path in files.items():
        run = tmp_path / f"run-{path.stem}"
        _run_dir_with(run, path)
        api_calls = [lambda p=path: load_generator(p), lambda r=run: load_generator(r),
                     lambda p=path: export_generator(p, tmp_path / "x.safetensors")]  # fmt: skip
        if kind != "named .safetensors":
            api_calls.append(lambda p=path: load_checkpoint(p))
        for call in api_calls:
            with pytest.raises(ValueError) as caught:
                call()
            assert "\n" not in str(caught.value)
        paint = ["inpaint", "--image", str(image), "--mask", str(mask), "--out", str(tmp_path / "o.png")]
        argvs = [  # (command line, the file the error must name)
            ([*paint, "--checkpoint", str(path)], path.name),
            ([*paint, "--checkpoint", str(run)], "ckpt_00000001.pt"),
            (["evaluate", "--checkpoint", str(path), "--n", "1", "--out", str(tmp_path / "eval")], path.name),
            (["export", str(path), "--out", str(tmp_path / "x.safetensors")], path.name),
            (["train", "--run-dir", str(run), "--resume"], "ckpt_00000001.pt"),
        ]
        for argv, name in argvs:
            capsys.readouterr()
            assert main(argv) == 2, (kind, argv[0])
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("deepfill-min: error: ") and name in err, err
        assert not marker.exists(), f"the {kind} checkpoint ran its payload"
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "x.safetensors").exists()
    assert not (tmp_path / "eval").exists()


def test_a_refused_checkpoint_names_the_object_it_asked_for(tmp_path):
    path = _malicious_files(tmp_path, tmp_path / "PWNED")["zip"]
    with pytest.raises(ValueError, match=r"zip.pt is refused: it asks for the Python object exec, which could run"):
        load_checkpoint(path)


def test_training_checkpoints_load_with_weights_only(tmp_path):
    """What the Trainer writes (models, optimisers, step, config) is all weights_only can read: resume needs no more."""
    from deepfill_min.train import Trainer  # noqa: PLC0415

    trainer = Trainer(make_config("tiny", overrides=[*small_runs.SMALL, "d_steps=1", "max_iters=1"]), tmp_path)
    trainer.train()
    state = torch.load(tmp_path / "ckpt_00000001.pt", weights_only=True)
    assert state["step"] == 1 and {"opt_g", "opt_d", "config"} <= set(state)


def _generator(cnum: int = 8, attention: bool = True, seed: int = 0, fuse_k: int = 3) -> Generator:
    torch.manual_seed(seed)
    return Generator(cnum, attention=attention, fuse_k=fuse_k).eval()


def test_safetensors_round_trip_gives_identical_outputs(tmp_path):
    """Tensors, colour order and the attention's fuse_k (not the official 3 here) come back."""
    G = _generator(fuse_k=5)
    save_atomic({"generator": G.state_dict(), "config": {**_cfg(), "color_order": "bgr", "fuse_k": 5}, "step": 3},
                tmp_path / "run" / "ckpt_00000003.pt")  # fmt: skip
    out = tmp_path / "model.safetensors"
    assert main(["export", str(tmp_path / "run"), "--out", str(out)]) == 0
    loaded, order = load_generator(out)
    assert order == "bgr" and loaded.contextual_attention.kwargs["fuse_k"] == 5
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), loaded.state_dict().values(), strict=True))
    image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    mask = np.zeros((40, 48), bool)
    mask[8:30, 10:40] = True
    a, b = inpaint(image, mask, G, "bgr", return_flow=True), inpaint(image, mask, loaded, order, return_flow=True)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.coarse, b.coarse) and np.array_equal(a.flow, b.flow)
    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(out, "pt") as f:
        meta = f.metadata()
        assert len(list(f.keys())) == 84
    assert meta["color_order"] == "bgr" and json.loads(meta["config"])["cnum"] == 8


def test_the_baseline_without_attention_round_trips_too(tmp_path):
    G = _generator(attention=False)
    save_generator(G.state_dict(), {}, "rgb", tmp_path / "base.safetensors")  # no config: read from the tensors
    loaded, _ = load_generator(tmp_path / "base.safetensors")
    assert not loaded.attention and torch.equal(loaded.allconv11.weight, G.allconv11.weight)


def _safetensors_variants(tmp_path) -> dict:
    from safetensors.torch import save_file  # noqa: PLC0415

    state = {k: v.clone() for k, v in _generator().state_dict().items()}
    meta = {"config": json.dumps({"cnum": 8}), "color_order": "rgb"}
    nan = torch.full_like(state["conv5.bias"], float("nan"))
    variants = {  # name: (tensors, metadata, what the error must say)
        "missing": ({k: v for k, v in state.items() if k != "pmconv9.weight"}, meta,
                    "1 tensors missing, e.g. pmconv9.weight"),
        "wrong shape": ({**state, "conv3.bias": torch.zeros(3)}, meta,
                        "1 tensors have the wrong shape, e.g. conv3.bias is (3,)"),
        "extra": ({**state, "evil.weight": torch.zeros(1)}, meta, "1 unexpected tensors, e.g. evil.weight"),
        "integer": ({**state, "conv3.weight": state["conv3.weight"].long()}, meta,
                    "not floating point, e.g. conv3.weight"),
        "nan": ({**state, "conv5.bias": nan}, meta, "NaN or infinite values in 1 tensors, e.g. conv5.bias"),
        "config disagrees": (state, {**meta, "config": json.dumps({"cnum": 32})}, "config says cnum=32"),
        "fuse_k even": (state, {**meta, "config": json.dumps({"cnum": 8, "fuse_k": 4})},
                        "its config says fuse_k=4, expected an odd integer"),
        "fuse_k text": (state, {**meta, "config": json.dumps({"fuse_k": "7"})}, "its config says fuse_k='7'"),
        "config not json": (state, {**meta, "config": "{cnum: 8"}, "is not valid JSON"),
        "colour order": (state, {**meta, "color_order": "grb"}, "color_order must be one of"),
        "no conv1": ({k: v for k, v in state.items() if not k.startswith("conv1.")}, meta,
                     "no 4-D tensor conv1.weight"),
    }  # fmt: skip
    paths = {}
    for name, (tensors, metadata, message) in variants.items():
        paths[name] = (tmp_path / f"{name.replace(' ', '_')}.safetensors", message)
        save_file({k: v.contiguous() for k, v in tensors.items()}, paths[name][0], metadata=metadata)
    good = paths["missing"][0].read_bytes()
    broken = {
        "truncated": (good[: len(good) // 2], "not a readable safetensors file"),
        "header lies": (struct.pack("<Q", 10**12) + b"{}", "not a safetensors file"),
        "garbage json": (struct.pack("<Q", 8) + b"{garbage", "not a readable safetensors file"),
        "not safetensors": (b"hello world, nothing to see", "not a safetensors file"),
    }
    for name, (data, message) in broken.items():
        paths[name] = (tmp_path / f"{name.replace(' ', '_')}.safetensors", message)
        paths[name][0].write_bytes(data)
    return paths


def test_safetensors_that_do_not_fit_are_refused_in_one_line(tmp_path):
    for name, (path, message) in _safetensors_variants(tmp_path).items():
        with pytest.raises(ValueError) as caught:
            load_generator(path)
        text = str(caught.value)
        assert message in text and str(path) in text and "\n" not in text, (name, text)


def test_an_incompatible_pt_checkpoint_is_summarised_not_listed(tmp_path):
    save_atomic({"generator": {"conv1.weight": torch.zeros(8, 5, 5, 5)}, "config": {}}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"x.pt does not fit this generator \(cnum=8, attention=False\): 67 tensors "
                                         r"missing, e.g. conv1.bias$"):  # fmt: skip
        load_generator(tmp_path / "x.pt")


def test_resume_with_a_checkpoint_from_another_config_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    small = [*small_runs.SMALL, "d_steps=1", "max_iters=1"]
    assert main(["train", "--run-dir", str(run), *small]) == 0
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("cnum: 8", "cnum: 16"))
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run), "--resume", "max_iters=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot resume this run: its generator does not fit the run's config" in err
