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

import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .checkpoint import save_atomic
from .config import make_config, to_dict
from .generator import Generator
from .weights import check_generator_state, save_generator

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
    """Every entry of a LevelDB table file (the checkpoint's ``.index``), or a one-line error for a damaged one."""
    data = path.read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
        raise ValueError(f"{path} is not a TensorFlow checkpoint index (bad table magic)")
    with _damaged_index(path):
        return _table_entries(data)


@contextmanager
def _damaged_index(path: Path) -> Iterator[None]:
    """Turn the parsers' errors on a damaged index (short reads, bad varints, wrong wire types) into one line."""
    try:
        yield
    except (IndexError, struct.error, ValueError, OverflowError) as err:
        raise ValueError(f"{path} is a damaged TensorFlow checkpoint index ({type(err).__name__}: {err})") from None


def _table_entries(data: bytes) -> dict[bytes, bytes]:
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
    if not all(isinstance(v, int) for v in (entry["dtype"], entry["shard_id"], entry["offset"], entry["size"],
                                            *entry["shape"])):  # fmt: skip
        raise ValueError("a tensor entry has fields of the wrong wire type")
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
        lines = state.read_bytes().decode("utf-8", errors="replace").splitlines()
        line = next((x for x in lines if x.startswith("model_checkpoint_path")), None)
        if line is None:
            raise ValueError(f"{state} names no model_checkpoint_path (is it a TensorFlow checkpoint state file?)")
        name = Path(line.split(":", 1)[1].strip().strip('"'))
        # the released files name the authors' absolute paths: the snapshot beside the state file comes first
        path = path / name.name if (path / f"{name.name}.index").is_file() or not name.is_absolute() else name
    if not path.with_name(path.name + ".index").is_file():
        raise FileNotFoundError(f"checkpoint index {path}.index does not exist")
    return path


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a TF checkpoint (directory or prefix) as NumPy arrays, by variable name."""
    prefix = checkpoint_prefix(path)
    index = prefix.with_name(prefix.name + ".index")
    table = read_table(index)
    with _damaged_index(index):
        header = dict(_fields(table.pop(b"", b"")))
        entries = {key: _entry(value) for key, value in table.items()}
    n_shards = header.get(1, 1)
    if not isinstance(n_shards, int) or not 1 <= n_shards < 100_000:
        raise ValueError(f"{index} is a damaged TensorFlow checkpoint index (number of shards {n_shards!r})")
    if header.get(2, 0) != 0:
        raise ValueError("big-endian checkpoints are not supported")
    shards: dict[int, bytes] = {}
    tensors = {}
    for key, entry in entries.items():
        if entry["dtype"] not in DTYPES:
            continue  # strings and resource handles are of no use here
        sid, dtype, name = entry["shard_id"], np.dtype(DTYPES[entry["dtype"]]), key.decode("utf-8", "replace")
        if sid not in shards:
            shard = prefix.with_name(f"{prefix.name}.data-{sid:05d}-of-{n_shards:05d}")
            if not shard.is_file():
                raise FileNotFoundError(f"checkpoint data file {shard} does not exist (needed for {name})")
            shards[sid] = shard.read_bytes()
        raw = shards[sid][entry["offset"] : entry["offset"] + entry["size"]]
        count = math.prod(entry["shape"])
        if min(entry["shape"], default=0) < 0 or len(raw) != entry["size"] or count * dtype.itemsize != len(raw):
            raise ValueError(f"{prefix}: variable {name} is damaged (shape {entry['shape']}, {len(raw)} bytes)")
        tensors[name] = np.frombuffer(raw, dtype=dtype).reshape(entry["shape"]).copy()
    return tensors


def tf_name(layer: str) -> str:
    """The official variable scope of a generator layer (§11)."""
    return f"inpaint_net/{layer}/{layer}_conv" if layer.endswith("_upsample") else f"inpaint_net/{layer}"


def convert(path: str | Path) -> dict:
    """A deepfill-min checkpoint dict holding the official generator (colour order BGR), every tensor checked."""
    tensors = read_checkpoint(path)
    kernel1 = tensors.get("inpaint_net/conv1/kernel")
    if kernel1 is None or kernel1.ndim != 4:
        raise ValueError(f"{path} holds no DeepFill v1 generator (no 4-D inpaint_net/conv1/kernel)")
    cnum = int(kernel1.shape[-1])
    with torch.device("meta"):  # the layer names only: nothing is allocated before the shapes are checked
        layers = [name for name, module in Generator(max(cnum, 2)).named_children() if hasattr(module, "weight")]
    state, missing = {}, []
    for name in layers:
        kernel, bias = tensors.get(f"{tf_name(name)}/kernel"), tensors.get(f"{tf_name(name)}/bias")
        if kernel is None or bias is None or kernel.ndim != 4:
            missing.append(tf_name(name))
            continue
        state[f"{name}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())  # [kh,kw,in,out] -> torch
        state[f"{name}.bias"] = torch.from_numpy(bias.copy())
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} generator variables, e.g. {missing[:3]}")
    _, state = check_generator_state(state, {"cnum": cnum}, Path(path))  # shapes, dtypes, finite values
    cfg = make_config("tiny", overrides=["image_size=[256,256]", "hole_size=[128,128]", "max_delta=[32,32]",
                                         f"cnum={cnum}", "color_order=bgr"])  # fmt: skip
    step = tensors.get("global_step")
    step = int(step) if step is not None and step.size == 1 and step.dtype.kind in "iu" else 0
    return {"generator": state, "config": to_dict(cfg), "step": step, "source": str(path), "color_order": "bgr"}


def convert_to_file(path: str | Path, out: str | Path) -> Path:
    """Convert and write ``.safetensors`` (to share: no code can hide in it) or ``.pt`` (a checkpoint dict)."""
    out = Path(out)
    if out.suffix not in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"--out {out} must end in .safetensors or .pt")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder, expected a file name")
    state = convert(path)
    if out.suffix == ".safetensors":
        return save_generator(state["generator"], state["config"], state["color_order"], out)
    return save_atomic(state, out)
