"""Checkpoints: one dict per file, written atomically, the last K kept, read without running code.

A checkpoint holds everything a run needs to continue exactly: generator, critics, both optimisers, the step, the
random-number states, the resolved config and the package version. It is written to a temporary file in the same
folder and renamed over the target (``os.replace`` is atomic), so a crash never leaves a half-written checkpoint.

**Loading cannot execute code.** A ``.pt`` file is a pickle, and unpickling may call any Python function the file
names (the classic hole PyTorch's documentation warns about). Every checkpoint is therefore read with
``torch.load(weights_only=True)``, whose unpickler builds only tensors, numbers, strings, lists, tuples and dicts:
exactly what a checkpoint here holds (models, optimisers, the step, the config as a dict). A file that needs
anything more is refused with one line naming the file and the object it asked for. To share weights, prefer
``.safetensors`` (`deepfill_min.weights`): a JSON header and raw bytes, no code at all.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch

from .files import write_atomic
from .images import one_line

PATTERN = re.compile(r"^ckpt_(\d{8})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"ckpt_{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if PATTERN.match(p.name))


def save_atomic(state: dict, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside `path`, then rename it over `path`."""
    return write_atomic(path, lambda f: torch.save(state, f))


def save_checkpoint(state: dict, run_dir: str | Path, keep: int) -> Path:
    """Write ``ckpt_<step>.pt`` atomically and delete all but the newest `keep` checkpoints."""
    path = checkpoint_path(Path(run_dir), state["step"])
    save_atomic(state, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def state_problems(expected: dict[str, torch.Tensor], tensors: object) -> list[str]:
    """What keeps `tensors` from loading into a module whose state dict is `expected`, a few words per kind.

    Names, then entries that are not tensors, shapes, and floating-point dtypes where the module has them; each
    kind is counted and one example named (load_state_dict's own message lists every key, on many lines).
    """
    if not isinstance(tensors, dict) or not all(isinstance(k, str) for k in tensors):
        return [f"a dict of tensors was expected, not a {type(tensors).__name__}"]
    present = [k for k in expected if k in tensors]
    not_tensors = [k for k in present if not isinstance(tensors[k], torch.Tensor)]
    present = [k for k in present if k not in not_tensors]
    shapes = [k for k in present if tensors[k].shape != expected[k].shape]
    dtypes = [k for k in present if expected[k].is_floating_point() and not tensors[k].is_floating_point()]
    kinds = [
        ("tensors missing", [k for k in expected if k not in tensors], str),
        ("unexpected tensors", [k for k in tensors if k not in expected], str),
        ("entries are not tensors", not_tensors, str),
        ("tensors have the wrong shape", shapes,
         lambda k: f"{k} is {tuple(tensors[k].shape)}, expected {tuple(expected[k].shape)}"),
        ("tensors are not floating point", dtypes, lambda k: f"{k} is {tensors[k].dtype}"),
    ]  # fmt: skip
    return [f"{len(keys)} {label}, e.g. {example(keys[0])}" for label, keys, example in kinds if keys]


def _refusal(err: pickle.UnpicklingError) -> str:
    """Why ``weights_only`` refused a file, in a few words (torch's own message is a dozen lines)."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    if found:
        return f"it asks for the Python object {found.group(1)}, which could run code"
    found = re.search(r"WeightsUnpickler error: ([^\n]+)", str(err))
    return f"it needs more than tensors, numbers and containers ({found.group(1) if found else one_line(err)})"


def torch_load(path: Path, map_location: str | torch.device = "cpu") -> object:
    """``torch.load(weights_only=True)`` with one-line errors that name `path`."""
    with path.open("rb") as f:
        head = f.read(4)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save writes a zip; old torch a pickle
        raise ValueError(f"{path} is not a deepfill-min checkpoint (neither a PyTorch zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the refusal below says what matters
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise ValueError(f"checkpoint {path} is refused: {_refusal(err)}; deepfill-min loads only tensors, "
                             "numbers, strings, lists and dicts") from None  # fmt: skip
        raise ValueError(f"{path} is not a deepfill-min checkpoint: {one_line(err)}") from None
    except PermissionError:
        raise ValueError(f"checkpoint {path} cannot be read: permission denied") from None
    except Exception as err:  # noqa: BLE001  (zip, pickle and storage errors of every kind)
        reason = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", one_line(err)).split(". ")[0]
        raise ValueError(f"{path} is not a deepfill-min checkpoint: damaged or truncated ({reason})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint` (or a run directory's newest) without executing any code."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise FileNotFoundError(f"no checkpoint (ckpt_*.pt) in {path}")
        path = found[-1]
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a regular file")
    state = torch_load(path, map_location)
    if not isinstance(state, dict) or "generator" not in state or "config" not in state:
        raise ValueError(f"{path} is not a deepfill-min checkpoint (expected a dict with generator and config)")
    if not isinstance(state["config"], dict):
        raise ValueError(f"{path} is not a deepfill-min checkpoint (its config is a {type(state['config']).__name__})")
    return state
