"""The main job: train with a config, then inpaint held-out images and report whether the model learned.

``deepfill-min train`` calls `train_and_evaluate`. The run directory receives the resolved ``config.yaml``,
``log.csv`` (every loss term and the critics' outputs), ``samples/step_*.png`` (input, coarse, refined, composite,
attention flow), the checkpoints, and at the end ``holdout.json`` and ``holdout.png``: the hole L1 of the untrained
and the trained generator on held-out images with a centred hole, next to the trivial fill.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import yaml

from .config import Config, make_config, read_yaml_mapping, to_dict
from .holdout import centre_mask, hole_l1, save_samples
from .train import Trainer, make_dataset

N_HOLDOUT = 32


def holdout_images(cfg: Config, n: int = N_HOLDOUT) -> torch.Tensor:
    data = make_dataset(cfg.val_data, "test", cfg)
    return torch.stack([data.load(i, torch.Generator().manual_seed(i)) for i in range(min(n, len(data)))])


def _previous_report(path: Path) -> dict:
    """The held-out figures a resumed run wrote before (its untrained baseline), or {} with a warning if unreadable."""
    if not path.exists():
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):
        report = None
    if not isinstance(report, dict):
        warnings.warn(f"{path} is not a JSON object: its figures are started afresh", stacklevel=2)
        return {}
    return report


def train_and_evaluate(cfg: Config, run_dir: str | Path, resume: bool = False) -> dict:
    """Train (or resume) a run, then measure the held-out hole L1. Returns the figures written to holdout.json."""
    run_dir = Path(run_dir)
    trainer = Trainer(cfg, run_dir)
    report_path = run_dir / "holdout.json"
    if resume:
        trainer.resume()
        report = _previous_report(report_path)
    else:
        if any(run_dir.glob("ckpt_*.pt")):
            raise ValueError(f"{run_dir} already holds checkpoints: pass --resume to continue, or a new --run-dir")
        report = {}
    with warnings.catch_warnings(record=True) as skipped:  # an unreadable data source fails now, before any output,
        warnings.simplefilter("always")  # in one line; the files skipped on the way are reported once it works
        trainer.data.load(0, torch.Generator().manual_seed(0))
    for w in skipped:
        warnings.warn(str(w.message), w.category, stacklevel=2)
    images = holdout_images(cfg)
    mask = centre_mask(cfg.image_size, cfg.hole_size)
    if trainer.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        report.setdefault("initial", hole_l1(trainer.G_eval, images, mask))
    few = images[:6]

    def on_sample(t: Trainer) -> None:
        save_samples(t.G_eval, few, mask, run_dir / "samples" / f"step_{t.step:08d}.png", f"step {t.step}")

    trainer.train(on_sample=on_sample)
    if trainer.rank == 0:
        report["final"] = hole_l1(trainer.G_eval, images, mask)
        report["step"] = trainer.step
        report_path.write_text(json.dumps(report, indent=2))
        save_samples(trainer.G_eval, few, mask, run_dir / "holdout.png",
                     f"held-out images after {trainer.step} steps (preset {cfg.preset})")  # fmt: skip
    return report


def config_from_run(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The config a run was started with (its config.yaml), with `overrides` such as ``max_iters=2000``."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a training run directory?")
    saved = read_yaml_mapping(path, "run config")
    preset = saved.pop("preset", None)
    if not isinstance(preset, str):
        raise ValueError(f"run config {path} names no preset: is {run_dir} a training run directory?")
    return make_config(preset, overrides=[f"{k}={json.dumps(v)}" for k, v in saved.items()]
                       + list(overrides or []))  # fmt: skip
