"""The TensorFlow checkpoint converter, on a fixture written by TensorFlow itself (see its script), without TF."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfill_min import convert_tf
from deepfill_min.cli import main
from deepfill_min.generator import Generator
from deepfill_min.weights import load_generator

FIXTURE = Path(__file__).parent / "fixtures" / "tf_checkpoint"


def test_reader_returns_every_tensor_exactly():
    tensors = convert_tf.read_checkpoint(FIXTURE)
    expected = np.load(FIXTURE / "expected.npz")
    assert len(expected.files) == 84  # the generator: 42 kernels and 42 biases
    for name in expected.files:
        assert tensors[name].dtype == np.float32 and np.array_equal(tensors[name], expected[name]), name
    assert int(tensors["global_step"]) == 7 and tensors["beta1_power"] == np.float32(0.5)
    assert "discriminator/discriminator_local/conv1/kernel" in tensors and "inpaint_net/conv1/kernel/Adam" in tensors


def test_conversion_maps_names_and_transposes_kernels(tmp_path):
    expected = np.load(FIXTURE / "expected.npz")
    state = convert_tf.convert(FIXTURE)
    assert state["step"] == 7 and state["color_order"] == "bgr" and state["config"]["cnum"] == 2
    g = state["generator"]
    # [kh, kw, in, out] -> [out, in, kh, kw], not (3, 2, 1, 0), which would swap kh and kw
    k = expected["inpaint_net/conv13_upsample/conv13_upsample_conv/kernel"]
    assert torch.equal(g["conv13_upsample.weight"], torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))
    assert torch.equal(g["pmconv6.bias"], torch.from_numpy(expected["inpaint_net/pmconv6/bias"]))
    out = tmp_path / "official.pt"
    assert main(["convert-tf", str(FIXTURE), "--out", str(out)]) == 0
    generator, order = load_generator(out)
    assert order == "bgr" and torch.equal(generator.conv1.weight, g["conv1.weight"])
    shared = tmp_path / "official.safetensors"  # the form to share: the same tensors, no pickle
    assert main(["convert-tf", str(FIXTURE), "--out", str(shared)]) == 0
    same, order = load_generator(shared)
    assert order == "bgr" and shared.read_bytes()[:8] != b"PK\x03\x04"
    for (name, a), b in zip(generator.state_dict().items(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_missing_variables_and_bad_files_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no 'checkpoint' file"):
        convert_tf.checkpoint_prefix(tmp_path)
    (tmp_path / "snap-1.index").write_bytes(b"x" * 64)
    with pytest.raises(ValueError, match="bad table magic"):
        convert_tf.read_table(tmp_path / "snap-1.index")
    copy = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, copy)
    full = convert_tf.read_checkpoint(copy)
    monkeypatch.setattr(convert_tf, "read_checkpoint", lambda p: {k: v for k, v in full.items() if "pmconv9" not in k})
    with pytest.raises(ValueError, match="lacks 1 generator variables"):
        convert_tf.convert(copy)
    assert main(["convert-tf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.pt")]) == 2


def test_full_size_round_trip_through_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    values = {}
    for name, module in Generator(32).named_children():
        if hasattr(module, "weight"):
            o, i, kh, kw = module.weight.shape
            values[f"{convert_tf.tf_name(name)}/kernel"] = rng.normal(size=(kh, kw, i, o)).astype(np.float32)
            values[f"{convert_tf.tf_name(name)}/bias"] = rng.normal(size=(o,)).astype(np.float32)
    with tf.Graph().as_default():
        variables = [tf.compat.v1.Variable(v, name=k) for k, v in values.items()]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(variables).save(sess, str(tmp_path / "snap"), global_step=1)
    tensors = convert_tf.read_checkpoint(tmp_path)
    assert all(np.array_equal(tensors[k], v) for k, v in values.items())
    assert sum(t.numel() for t in convert_tf.convert(tmp_path)["generator"].values()) == 3_601_542
