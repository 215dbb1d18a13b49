"""The generator's weights: load them from any file a user may hand over, and share them as ``.safetensors``.

`load_generator` accepts

* a training run directory (its newest ``ckpt_*.pt``) or one checkpoint ``.pt``, read without running code
  (`deepfill_min.checkpoint`);
* a ``.pt`` written by ``deepfill-min convert-tf`` (the official weights);
* ``"builtin"``: the model this project trained and ships inside the package (``make pretrained``,
  docs/model-card.md), a half-width generator trained at 128×128 on the built-in images;
* a ``.safetensors`` file written by `export_generator` (``deepfill-min export``) or by ``convert-tf --out
  x.safetensors``: the generator's 84 tensors (fewer without attention), and in the metadata the training config and
  the colour order. safetensors is a JSON header plus raw little-endian bytes: nothing in it can run code, and it is
  the format the ecosystem shares weights in. Share and fetch these.

The files are sniffed by content, not by name. The architecture is read from the tensors themselves (``cnum`` from
``conv1``'s filters, the attention branch from ``pmconv*``), cross-checked against the config the file declares, and
every tensor is checked against a generator built on the ``meta`` device (no memory) before anything is allocated:
names, shapes, a floating dtype, finite values. Each failure is one line: ``checkpoint x.pt does not fit this
generator: 84 tensors missing, e.g. conv1.weight``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import __version__
from .allocator import keep_freed_memory
from .checkpoint import load_checkpoint, state_problems
from .config import is_fuse_k, resolve_device
from .files import write_atomic
from .generator import Generator
from .images import one_line

FORMAT = "deepfill-min generator"
COLOR_ORDERS = ("rgb", "bgr")


def is_safetensors(path: Path) -> bool:
    """Whether `path` starts like a safetensors file: an 8-byte little-endian header length, then ``{``."""
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file, with a one-line error for a bad one."""
    from safetensors import safe_open  # noqa: PLC0415  (keep `import deepfill_min` light)

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except Exception as err:  # noqa: BLE001  (safetensors raises its own error type, or OSError)
        raise ValueError(f"checkpoint {path} is not a readable safetensors file: {one_line(err)}") from None


def _declared(path: Path) -> tuple[dict, dict, str]:
    """(tensors, config, colour order) as the file states them, unchecked."""
    if path.is_file() and is_safetensors(path):
        tensors, meta = read_safetensors(path)
        try:
            config = json.loads(meta.get("config", "{}"))
        except (ValueError, RecursionError):
            raise ValueError(f"checkpoint {path}: its metadata 'config' is not valid JSON") from None
        if not isinstance(config, dict):
            raise ValueError(f"checkpoint {path}: its metadata 'config' is not a mapping")
        return tensors, config, meta.get("color_order", config.get("color_order", "rgb"))
    if path.is_file() and path.suffix == ".safetensors":
        raise ValueError(f"checkpoint {path} is not a safetensors file (no JSON header)")
    state = load_checkpoint(path)
    config = state["config"]
    tensors = state.get("generator_ema", state["generator"])  # a run with ema_decay: its weight average
    return tensors, config, state.get("color_order", config.get("color_order", "rgb"))


def _architecture(tensors: dict, config: dict, path: Path) -> tuple[int, bool]:
    """``cnum`` and ``attention`` read from the tensors, checked against what the config says."""
    conv1 = tensors.get("conv1.weight")
    if not isinstance(conv1, torch.Tensor) or conv1.ndim != 4:
        raise ValueError(f"checkpoint {path} does not fit this generator: no 4-D tensor conv1.weight")
    cnum, attention = int(conv1.shape[0]), any(k.startswith("pmconv") for k in tensors)
    if cnum < 2 or cnum % 2:
        raise ValueError(f"checkpoint {path} does not fit this generator: conv1.weight has {cnum} filters "
                         "(cnum must be even)")  # fmt: skip
    for key, found in (("cnum", cnum), ("attention", attention)):
        if key in config and config[key] != found:
            raise ValueError(f"checkpoint {path}: its config says {key}={config[key]!r} but its tensors have "
                             f"{key}={found!r}")  # fmt: skip
    return cnum, attention


def _fuse_k(config: dict, path: Path) -> int:
    """The attention's ``fuse_k`` the file was trained with (official 3 when the config does not say)."""
    fuse_k = config.get("fuse_k", 3)
    if not is_fuse_k(fuse_k):
        raise ValueError(f"checkpoint {path}: its config says fuse_k={fuse_k!r}, expected an odd integer of at least 1")
    return fuse_k


def check_generator_state(tensors: object, config: dict, path: Path) -> tuple[Generator, dict]:
    """A meta-device generator of the file's architecture and the file's tensors as float32, after every check."""
    if not isinstance(tensors, dict):
        raise ValueError(f"checkpoint {path} does not fit this generator: its generator is not a dict of tensors")
    cnum, attention = _architecture(tensors, config, path)
    with torch.device("meta"):
        G = Generator(cnum, attention=attention)
    expected = G.state_dict()
    problems = state_problems(expected, tensors)
    if problems:
        raise ValueError(f"checkpoint {path} does not fit this generator (cnum={cnum}, attention={attention}): "
                         + "; ".join(problems))  # fmt: skip
    state = {k: tensors[k].detach().to("cpu", torch.float32) for k in expected}
    bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"checkpoint {path} holds NaN or infinite values in {len(bad)} tensors, e.g. {bad[0]}")
    return G, state


BUILTIN = "builtin"
BUILTIN_FILE = Path(__file__).parent / "pretrained" / "deepfill-min-128.safetensors"


def resolve_weights(path: str | Path) -> Path:
    """`path` itself, or for ``"builtin"`` the shipped model's file (``make pretrained``, docs/model-card.md)."""
    if str(path) != BUILTIN:
        return Path(path)
    if not BUILTIN_FILE.is_file():
        raise ValueError(f"the built-in model {BUILTIN_FILE.name} is missing from this installation")
    return BUILTIN_FILE


def generator_from_file(path: str | Path) -> tuple[dict, dict, str]:
    """(float32 state dict, config, colour order) of any weights file, run directory or ``"builtin"``, checked."""
    path = resolve_weights(path)
    tensors, config, color_order = _declared(path)
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"checkpoint {path}: color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
    G, state = check_generator_state(tensors, config, path)
    config = {**config, "cnum": int(state["conv1.weight"].shape[0]), "attention": G.attention,
              "fuse_k": _fuse_k(config, path)}  # fmt: skip
    return state, config, color_order


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, str]:
    """The generator of a weights file, a run directory or ``"builtin"`` (the shipped model), in eval mode on
    `device`, and its colour order.

    On the CPU the kernels are channels-last: oneDNN's convolutions then run on channels-last tensors throughout,
    about a quarter faster (docs/benchmarks.md); the values are the same to float rounding. Freed memory is kept
    for re-use (`deepfill_min.allocator`: no page faults on each large temporary, the same values).
    """
    device = resolve_device(str(device))
    keep_freed_memory()
    state, config, color_order = generator_from_file(path)
    with torch.device("meta"):  # no random initialisation to throw away (28 ms at full width)
        G = Generator(config["cnum"], attention=config["attention"], fuse_k=config["fuse_k"])
    G.load_state_dict(state, assign=True)
    G = G.to(device).eval()
    return (G.to(memory_format=torch.channels_last) if device.type == "cpu" else G), color_order


def _safetensors_out(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out} must end in .safetensors")
    return out


def save_generator(state: dict[str, torch.Tensor], config: dict, color_order: str, out: str | Path) -> Path:
    """Write a generator state dict as ``.safetensors`` (config and colour order in the metadata), atomically."""
    from safetensors.torch import save  # noqa: PLC0415

    out = _safetensors_out(out)
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
    cnum, attention = _architecture(state, {}, out)  # what the tensors say wins over the config
    config = {**config, "color_order": color_order, "cnum": cnum, "attention": attention}
    meta = {"format": FORMAT, "version": __version__, "color_order": color_order,
            "config": json.dumps(config, allow_nan=False)}  # fmt: skip
    data = save({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata=meta)
    return write_atomic(out, lambda f: f.write(data))


def export_generator(source: str | Path, out: str | Path) -> Path:
    """``deepfill-min export``: the generator of a run or checkpoint alone, as ``.safetensors``."""
    _safetensors_out(out)  # before the work of loading
    state, config, color_order = generator_from_file(source)
    return save_generator(state, config, color_order, out)


__all__ = ["check_generator_state", "export_generator", "load_generator", "save_generator"]
