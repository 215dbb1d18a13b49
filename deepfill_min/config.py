"""Training configuration: one validated dataclass, three presets, YAML files and ``key=value`` overrides.

The defaults are the released ``inpaint.yml`` (spec §6-§8); presets change only what they name:

* ``tiny`` (the default): the built-in images at 64×64 with 32×32 holes and a half-width model, so a real run
  finishes on a 2-core CPU in a few minutes;
* ``places2-256``: 256×256 random crops of a folder or ``.flist`` (set ``data=``), as the yml advises for Places2;
* ``celebahq-256``: 256×256 resized images (``RANDOM_CROP: False``), the released yml's own setting;
* ``builtin-128``: the recipe of the shipped model (``make pretrained``, docs/model-card.md): the built-in images at
  128×128 with holes of 32-64 pixels a side (an attention grid of 16×16), a half-width model, on a 2-core CPU in
  about an hour. Its deviations from the official recipe (docs/model-card.md): bf16 autocast and channels_last
  (1.7 s per iteration instead of 3.1 s), and a reconstruction warm-up: the first 5,500 of its 6,000 iterations are
  generator updates on the L1 and auto-encoder losses alone (0.43 s each instead of 1.7 s), then the WGAN-GP
  schedule of 5 critic + 1 generator updates. The losses, their weights, λ, γ and the optimiser are the official ones.

Unknown keys and values of the wrong type are errors. Deviation: G and D have separate Adam optimisers (the official
code shares one, whose bias-correction powers then advance on every update; the difference vanishes after about
100 steps).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from .images import check_file, one_line
from .masks import check_box_fits


@dataclass
class Config:
    preset: str = "tiny"
    # data (§9)
    data: str = "builtin"  # "builtin", a folder of images, or a .flist file
    val_data: str = "builtin"  # held-out images for the end-of-run evaluation
    image_size: tuple[int, int] = (256, 256)
    random_crop: bool = False
    color_order: str = "rgb"
    # masks (§8)
    hole_size: tuple[int, int] = (128, 128)
    max_delta: tuple[int, int] = (32, 32)
    margin: tuple[int, int] = (0, 0)
    mask_mode: str = "per_sample"  # "shared" is the official one-mask-per-batch
    mask_type: str = "bbox"  # "bbox" (v1) or "brush" (free-form strokes)
    # model (§3, §5)
    cnum: int = 32
    d_cnum: int = 64
    attention: bool = True  # False: the paper's baseline without the contextual-attention branch (ablation)
    fuse_k: int = 3  # the attention's score propagation: a fuse_k x fuse_k identity kernel (official 3)
    # losses (§6)
    coarse_l1_alpha: float = 1.2
    l1_loss_alpha: float = 1.2
    ae_loss_alpha: float = 1.2
    gan_loss_alpha: float = 0.001
    global_wgan_loss_alpha: float = 1.0
    wgan_gp_lambda: float = 10.0
    spatial_discounting_gamma: float = 0.9
    pretrain_coarse: bool = False
    warmup_iters: int = 0  # the first N iterations: generator updates on L1 + AE alone, no critics (not official)
    # optimisation (§7)
    batch_size: int = 16
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    d_steps: int = 5
    max_iters: int = 1_000_000
    lr_decay_iters: int = 0  # the last N iterations: both learning rates fall along a cosine toward 0 (not official)
    ema_decay: float = 0.0  # > 0: samples, report and export use an EMA of the generator's weights (not official)
    # logging and checkpoints
    log_every: int = 10
    sample_every: int = 1000
    checkpoint_every: int = 10_000
    keep_checkpoints: int = 3
    # runtime
    num_workers: int = -1  # DataLoader worker processes per rank; -1: the CPU cores per rank minus one, at most 8
    seed: int = 2018
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: str = "none"  # "none" or "bf16" (autocast)
    channels_last: bool = False  # the critics too (the generator is channels-last on the CPU anyway)
    gpu_defaults: bool = True  # on CUDA: bf16 autocast, channels_last, cudnn.benchmark; false: strict float32
    compile: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        choices = {"color_order": ("rgb", "bgr"), "mask_mode": ("shared", "per_sample"),
                   "mask_type": ("bbox", "brush"), "amp": ("none", "bf16")}  # fmt: skip
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        h, w = self.image_size
        if h < 16 or w < 16 or h % 8 or w % 8:
            raise ValueError(f"image_size must be two multiples of 8 of at least 16, got {self.image_size}")
        if min(self.hole_size) < 1 or min(self.max_delta) < 0 or min(self.margin) < 0:
            raise ValueError(f"hole_size must be positive, max_delta and margin not negative; got {self.hole_size}, "
                             f"{self.max_delta}, {self.margin}")  # fmt: skip
        if self.hole_size[0] >= h or self.hole_size[1] >= w:
            raise ValueError(f"hole_size {self.hole_size} must be smaller than image_size {self.image_size}")
        if any(d > s for d, s in zip(self.max_delta, self.hole_size, strict=True)):
            raise ValueError(f"max_delta {self.max_delta} must not exceed hole_size {self.hole_size}")
        for key in ("batch_size", "d_steps", "max_iters", "log_every", "sample_every", "checkpoint_every",
                    "keep_checkpoints", "cnum", "d_cnum"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.warmup_iters < 0:
            raise ValueError(f"warmup_iters must be 0 or more, got {self.warmup_iters}")
        if not 0 <= self.lr_decay_iters <= self.max_iters:
            raise ValueError(f"lr_decay_iters must be between 0 and max_iters ({self.max_iters}), "
                             f"got {self.lr_decay_iters}")  # fmt: skip
        if not (math.isfinite(self.ema_decay) and 0 <= self.ema_decay < 1):
            raise ValueError(f"ema_decay must be in [0, 1) (0: no average), got {self.ema_decay}")
        if self.num_workers < -1:
            raise ValueError(f"num_workers must be -1 (automatic), 0 or more, got {self.num_workers}")
        if not is_fuse_k(self.fuse_k):
            raise ValueError(f"fuse_k must be an odd number of at least 1, got {self.fuse_k}")
        if self.cnum % 2:
            raise ValueError(f"cnum must be even, got {self.cnum}")
        check_box_fits(self.image_size, self.hole_size, self.margin)
        for key in ("lr", "coarse_l1_alpha", "l1_loss_alpha", "ae_loss_alpha", "gan_loss_alpha",
                    "global_wgan_loss_alpha", "wgan_gp_lambda"):  # fmt: skip
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0 or (key == "lr" and value == 0):
                raise ValueError(f"{key} must be a finite number {'above' if key == 'lr' else 'of at least'} 0, "
                                 f"got {value}")  # fmt: skip
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if not 0 < self.spatial_discounting_gamma <= 1:
            raise ValueError(f"spatial_discounting_gamma must be in (0, 1], got {self.spatial_discounting_gamma}")
        if self.device != "auto":
            parse_device(self.device)


def is_fuse_k(value: object) -> bool:
    """Whether `value` is a valid ``fuse_k``: an odd integer of at least 1 (the config's rule and a weights file's)."""
    return type(value) is int and value >= 1 and value % 2 == 1


PRESETS: dict[str, dict] = {
    "tiny": dict(image_size=(64, 64), hole_size=(32, 32), max_delta=(8, 8), cnum=16, d_cnum=32, batch_size=8,
                 max_iters=300, log_every=10, sample_every=100, checkpoint_every=100),
    "builtin-128": dict(image_size=(128, 128), hole_size=(64, 64), max_delta=(32, 32), cnum=16, d_cnum=32,
                        batch_size=8, amp="bf16", channels_last=True, warmup_iters=5500, max_iters=6000,
                        log_every=50, sample_every=1000, checkpoint_every=1000),
    "places2-256": dict(data="", val_data="", random_crop=True),
    "celebahq-256": dict(data="", val_data="", random_crop=False),
}  # fmt: skip


def _coerce(name: str, kind, value):
    """Check `value` against the annotation `kind` (tuples from lists; ints accepted for floats)."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(kind)):
            raise ValueError(f"{name} must be a list of {len(typing.get_args(kind))} numbers, got {value!r}")
        return tuple(_coerce(name, t, v) for t, v in zip(typing.get_args(kind), value, strict=True))
    if kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads "1e-3" as a string
            return float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool):
        raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")
    return value


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The mapping a YAML file holds, with a one-line error naming `what` and the file for anything else."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not UTF-8 text") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{what} {path} is not valid YAML: {one_line(err)}") from None
    except RecursionError:
        raise ValueError(f"{what} {path} is nested too deeply") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise ValueError(f"{what} {path} must hold a mapping of keys to values")
    return loaded


def make_config(preset: str = "tiny", file: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """A preset, then the keys of a YAML `file`, then ``key=value`` `overrides`; every key and value is checked."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    values: dict = {"preset": preset, **PRESETS[preset]}
    if file is not None:
        path = check_file(file, "config file")
        values.update(read_yaml_mapping(path, "config file"))
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: the value is not valid YAML ({one_line(err)})") from None
    hints = typing.get_type_hints(Config)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(hints)}")
    return Config(**{k: _coerce(k, hints[k], v) for k, v in values.items()})


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for a config's ``device`` ("auto": this rank's GPU if there is one), checked to exist."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = parse_device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but CUDA is not available here (no GPU, or a CPU "
                             "build of torch)")  # fmt: skip
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    return device


def parse_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a torch device (not checked to exist), else a ValueError."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return device


def to_dict(cfg: Config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


__all__ = ["PRESETS", "Config", "make_config", "resolve_device", "to_dict"]
