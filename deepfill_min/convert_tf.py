r"""``deepfill-min convert-tf``: the official TensorFlow checkpoints to a deepfill-min checkpoint, without TensorFlow.

A TF2-format checkpoint (what ``tf.train.Saver`` writes, spec §11) is a prefix ``snap-N`` with

* ``snap-N.index``: a LevelDB *sorted string table* mapping each variable name to a ``BundleEntryProto`` (dtype,
  shape, shard, offset, size, checksum); the key ``""`` holds the ``BundleHeaderProto`` (number of shards, byte order);
* ``snap-N.data-SSSSS-of-NNNNN``: the raw little-endian tensor bytes, at those offsets.

Both formats are small and stable, so they are read here directly: a 14 MB generator does not need a 1.5 GB framework.
The 84 generator tensors are mapped by name (``inpaint_net/<layer>/kernel``, with ``<layer>/<layer>_conv`` for the
upsampling layers), kernels go from TF's [kh, kw, in, out] to torch's [out, in, kh, kw] (``transpose(3, 2, 0, 1)``),
every tensor is checked for presence and shape, and the result records the colour order **BGR** (the official
models were trained on ``cv2.imread`` images). Discriminator and optimizer variables are ignored.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from .checkpoint import save_atomic
from .config import make_config, to_dict
from .generator import Generator

TABLE_MAGIC = 0xDB4775248B80FB57
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 6: np.int8, 9: np.int64, 10: np.bool_,
          14: np.uint16, 19: np.float16}  # fmt: skip


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _block_entries(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of one table block (prefix-compressed keys; restarts array at the end)."""
    block = data[offset : offset + size]
    if data[offset + size] != 0:
        raise ValueError("compressed checkpoint index blocks are not supported")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def read_table(path: Path) -> dict[bytes, bytes]:
    """Every entry of a LevelDB table file (the checkpoint's ``.index``)."""
    data = path.read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
        raise ValueError(f"{path} is not a TensorFlow checkpoint index (bad table magic)")
    pos = len(data) - 48
    _, pos = _varint(data, pos)  # metaindex handle (unused)
    _, pos = _varint(data, pos)
    index_offset, pos = _varint(data, pos)
    index_size, pos = _varint(data, pos)
    table = {}
    for _, handle in _block_entries(data, index_offset, index_size):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        table.update(_block_entries(data, offset, size))
    return table


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Protobuf wire format: (field number, value) for varint, fixed32/64 and length-delimited fields."""
    out, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


def _entry(value: bytes) -> dict:
    """A ``BundleEntryProto``: dtype, shape, shard_id, offset, size (slices are not supported)."""
    entry = {"dtype": 0, "shape": [], "shard_id": 0, "offset": 0, "size": 0}
    for number, field in _fields(value):
        if number == 1:
            entry["dtype"] = field
        elif number == 2:
            entry["shape"] = [dict(_fields(dim)).get(1, 0) for n, dim in _fields(field) if n == 2]
        elif number in (3, 4, 5):
            entry[("shard_id", "offset", "size")[number - 3]] = field
        elif number == 7:
            raise ValueError("partitioned (sliced) variables are not supported")
    return entry


def checkpoint_prefix(path: str | Path) -> Path:
    """The ``snap-N`` prefix of a checkpoint directory (from its ``checkpoint`` file) or of a given prefix."""
    path = Path(path)
    if path.is_dir():
        state = path / "checkpoint"
        if not state.is_file():
            state = path / "checkpoint.txt"  # the released archives ship it under this name
        if not state.is_file():
            raise FileNotFoundError(f"{path} has no 'checkpoint' file naming the latest snapshot")
        line = next(x for x in state.read_text().splitlines() if x.startswith("model_checkpoint_path"))
        name = Path(line.split(":", 1)[1].strip().strip('"'))
        path = name if name.is_absolute() else path / name.name
    if not path.with_name(path.name + ".index").is_file():
        raise FileNotFoundError(f"checkpoint index {path}.index does not exist")
    return path


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a TF checkpoint (directory or prefix) as NumPy arrays, by variable name."""
    prefix = checkpoint_prefix(path)
    table = read_table(prefix.with_name(prefix.name + ".index"))
    header = dict(_fields(table.pop(b"", b"")))
    n_shards = header.get(1, 1)
    if header.get(2, 0) != 0:
        raise ValueError("big-endian checkpoints are not supported")
    shards: dict[int, bytes] = {}
    tensors = {}
    for key, value in table.items():
        entry = _entry(value)
        if entry["dtype"] not in DTYPES:
            continue  # strings and resource handles are of no use here
        sid = entry["shard_id"]
        if sid not in shards:
            shards[sid] = prefix.with_name(f"{prefix.name}.data-{sid:05d}-of-{n_shards:05d}").read_bytes()
        raw = shards[sid][entry["offset"] : entry["offset"] + entry["size"]]
        tensors[key.decode()] = np.frombuffer(raw, dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"]).copy()
    return tensors


def tf_name(layer: str) -> str:
    """The official variable scope of a generator layer (§11)."""
    return f"inpaint_net/{layer}/{layer}_conv" if layer.endswith("_upsample") else f"inpaint_net/{layer}"


def convert(path: str | Path) -> dict:
    """A deepfill-min checkpoint dict holding the official generator (colour order BGR)."""
    tensors = read_checkpoint(path)
    if "inpaint_net/conv1/kernel" not in tensors:
        raise ValueError(f"{path} holds no DeepFill v1 generator (no inpaint_net/conv1/kernel)")
    cnum = int(tensors["inpaint_net/conv1/kernel"].shape[-1])
    generator = Generator(cnum)
    state, missing = {}, []
    for name, module in generator.named_children():
        if not hasattr(module, "weight"):
            continue
        kernel, bias = tensors.get(f"{tf_name(name)}/kernel"), tensors.get(f"{tf_name(name)}/bias")
        if kernel is None or bias is None:
            missing.append(tf_name(name))
            continue
        weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())  # [kh, kw, in, out] -> [out, in, kh, kw]
        if weight.shape != module.weight.shape or tuple(bias.shape) != tuple(module.bias.shape):
            raise ValueError(f"{tf_name(name)}: kernel {kernel.shape} / bias {bias.shape} do not fit a generator "
                             f"with cnum={cnum} (expected {tuple(module.weight.shape)} in torch layout)")  # fmt: skip
        state[f"{name}.weight"], state[f"{name}.bias"] = weight, torch.from_numpy(bias.copy())
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} generator variables, e.g. {missing[:3]}")
    generator.load_state_dict(state)
    cfg = make_config("tiny", overrides=["image_size=[256,256]", "hole_size=[128,128]", "max_delta=[32,32]",
                                         f"cnum={cnum}", "color_order=bgr"])  # fmt: skip
    step = tensors.get("global_step")
    return {"generator": generator.state_dict(), "config": to_dict(cfg), "step": int(step) if step is not None else 0,
            "source": str(path), "color_order": "bgr"}  # fmt: skip


def convert_to_file(path: str | Path, out: str | Path) -> Path:
    out = Path(out)
    save_atomic(convert(path), out)
    return out
