r"""Two-stage WGAN-GP training of DeepFill v1 (spec §6-§8), single process or ``torchrun`` data parallel.

One iteration is the official schedule: **5 critic updates, then 1 generator update**, each on a fresh batch with
fresh holes (§7). A critic update scores real images and composites $x_2 m + x(1-m)$ with the local critic (box
crops) and the global critic (whole images), adds the hole-masked gradient penalty, and steps the critics' Adam; a
generator update adds the discounted L1, the auto-encoder loss and $0.001\times$ the adversarial loss and steps the
generator's Adam (lr 1e-4, betas (0.5, 0.9)). ``pretrain_coarse`` trains stage 1 alone with L1 terms.

Everything random (which images, crops, boxes, holes, the penalty's $\alpha$) comes from one ``torch.Generator``
whose state is checkpointed with the models and optimisers, so a run stopped and resumed equals a run straight
through, bit for bit on the CPU. Ctrl-C finishes the current iteration, saves a checkpoint and exits; a loss that
becomes NaN or infinite stops the run with a message and leaves the last good checkpoint in place.

Data parallel (``torchrun --nproc_per_node=N -m deepfill_min.cli train ...``): the generator is wrapped in
``DistributedDataParallel``; the critics' gradients are averaged with ``all_reduce`` by hand, because DDP does not
support the ``autograd.grad`` of the gradient penalty (PyTorch's DDP documentation). Each rank draws its own batches
(seed + rank); the effective batch is N × batch_size.
"""

from __future__ import annotations

import csv
import math
import os
import signal
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from . import __version__
from .checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, state_problems
from .config import Config, resolve_device, to_dict
from .data import BuiltinImages, ImageFiles
from .discriminator import Discriminator
from .generator import Generator
from .images import one_line
from .losses import ae_loss, gradient_penalty, l1_loss, wgan_loss
from .masks import bbox2mask, brush_stroke_mask, local_patch, random_bbox, spatial_discount

LOG_KEYS = ("step", "g_loss", "l1", "ae", "g_adv_local", "g_adv_global", "d_loss", "gp", "d_real_local",
            "d_fake_local", "d_real_global", "d_fake_global")  # fmt: skip


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def make_dataset(source: str, split: str, cfg: Config):
    if source == "builtin":
        if cfg.image_size[0] != cfg.image_size[1]:
            raise ValueError(f"the built-in images are square; image_size is {cfg.image_size}")
        return BuiltinImages(split, cfg.image_size[0], color_order=cfg.color_order)
    if not source:
        raise ValueError(f"preset {cfg.preset!r} needs data=<folder or .flist> (and val_data=...)")
    return ImageFiles(source, cfg.image_size, cfg.random_crop, cfg.color_order)


class Trainer:
    """Holds the models, optimisers, data and random state of one run in `run_dir`."""

    def __init__(self, cfg: Config, run_dir: str | Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.G = Generator(cfg.cnum, attention=cfg.attention).to(self.device)
        self.D = Discriminator(cfg.image_size, cfg.hole_size, cfg.d_cnum).to(self.device)
        if cfg.channels_last:
            self.G, self.D = self.G.to(memory_format=torch.channels_last), self.D.to(memory_format=torch.channels_last)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas)
        self.G_train = self.G
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train = torch.nn.parallel.DistributedDataParallel(self.G, device_ids=ids)
        if cfg.compile:
            self.G_train = torch.compile(self.G_train)
        self.rng = torch.Generator().manual_seed(cfg.seed + 1 + self.rank)
        self.data = make_dataset(cfg.data, "train", cfg)
        self.discount = spatial_discount(cfg.hole_size, cfg.spatial_discounting_gamma).to(self.device)
        self.step = 0
        self._stop = False
        self._tb = None  # a SummaryWriter once needed, False when tensorboard is not installed

    # --- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step,
                "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(), "config": to_dict(self.cfg),
                "version": __version__}  # fmt: skip

    def load_state_dict(self, state: dict, source: str | Path = "the checkpoint") -> None:
        """Restore a `state_dict`; a state that does not fit this run is a one-line ValueError naming `source`."""
        for key, module in (("generator", self.G), ("discriminator", self.D)):
            problems = state_problems(module.state_dict(), state.get(key))
            if problems:
                raise ValueError(f"{source} cannot resume this run: its {key} does not fit the run's config "
                                 f"({'; '.join(problems)})")  # fmt: skip
        step = state.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"{source} cannot resume this run: its step is {step!r}")
        try:
            self.G.load_state_dict(state["generator"])
            self.D.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.rng.set_state(state["rng"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise ValueError(f"{source} cannot resume this run: {type(err).__name__} {one_line(err)}") from None
        self.step = step

    def resume(self) -> None:
        """Continue from the newest checkpoint of the run directory (and drop log rows written after it)."""
        found = list_checkpoints(self.run_dir)
        self.load_state_dict(load_checkpoint(self.run_dir, self.device), found[-1] if found else self.run_dir)
        log = self.run_dir / "log.csv"
        if self.rank == 0 and log.exists():
            with log.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
            self._write_log(rows, mode="w")

    def save(self) -> Path | None:
        if self.rank != 0:
            return None
        return save_checkpoint(self.state_dict(), self.run_dir, self.cfg.keep_checkpoints)

    # --- one update ---------------------------------------------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fresh images (B, 3, H, W), holes (1 or B, 1, H, W) and their boxes (1 or B, 4)."""
        cfg = self.cfg
        idx = torch.randint(len(self.data), (cfg.batch_size,), generator=self.rng)
        x = torch.stack([self.data.load(int(i), self.rng) for i in idx])
        n = 1 if cfg.mask_mode == "shared" else cfg.batch_size
        boxes = random_bbox(n, cfg.image_size, cfg.hole_size, cfg.margin, self.rng)
        if cfg.mask_type == "bbox":
            mask = bbox2mask(boxes, cfg.image_size, cfg.max_delta, self.rng)
        else:  # free-form strokes inside each box
            strokes = brush_stroke_mask(n, cfg.hole_size, self.rng)
            mask = torch.zeros(n, 1, *cfg.image_size)
            for i, (t, l, h, w) in enumerate(boxes.tolist()):
                mask[i, :, t : t + h, l : l + w] = strokes[i]
        return x.to(self.device), mask.to(self.device), boxes

    def _autocast(self):
        return torch.autocast(self.device.type, torch.bfloat16) if self.cfg.amp == "bf16" else nullcontext()

    def d_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        x, mask, boxes = self.batch()
        xin = x * (1 - mask)
        with torch.no_grad(), self._autocast():
            x2 = self.G(xin, mask).x_stage2.float()
        fake = x2 * mask + xin * (1 - mask)  # the composite
        both, both_boxes = torch.cat([x, fake]), boxes.repeat(2 if boxes.shape[0] > 1 else 1, 1)
        with self._autocast():
            d_local, d_global = (s.float() for s in self.D(local_patch(both, both_boxes), both))
            gp_local = gradient_penalty(self.D.local_score, local_patch(x, boxes), local_patch(fake, boxes),
                                        local_patch(mask, boxes), self.rng)  # fmt: skip
            gp_global = gradient_penalty(self.D.global_score, x, fake, mask, self.rng)
        real_l, fake_l = d_local.chunk(2)
        real_g, fake_g = d_global.chunk(2)
        gp = cfg.wgan_gp_lambda * (gp_local + gp_global)
        d_loss = wgan_loss(real_l, fake_l)[0] + wgan_loss(real_g, fake_g)[0] + gp
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        if self.world > 1:
            for p in self.D.parameters():
                dist.all_reduce(p.grad)
                p.grad /= self.world
        self.opt_d.step()
        return {"d_loss": d_loss, "gp": gp, "d_real_local": real_l.mean(), "d_fake_local": fake_l.mean(),
                "d_real_global": real_g.mean(), "d_fake_global": fake_g.mean()}  # fmt: skip

    def g_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        x, mask, boxes = self.batch()
        xin = x * (1 - mask)
        with self._autocast():
            out = self.G_train(xin, mask)
        x1, x2 = out.x_stage1.float(), None if cfg.pretrain_coarse else out.x_stage2.float()
        crop = local_patch
        l1 = l1_loss(crop(x, boxes), crop(x1, boxes), None if x2 is None else crop(x2, boxes), self.discount,
                     cfg.coarse_l1_alpha)  # fmt: skip
        ae = ae_loss(x, x1, x2, mask, cfg.coarse_l1_alpha)
        zero = torch.zeros((), device=self.device)
        g_adv_local = g_adv_global = zero
        if not cfg.pretrain_coarse:
            fake = x2 * mask + xin * (1 - mask)
            self.D.requires_grad_(False)
            with self._autocast():
                d_local, d_global = (s.float() for s in self.D(crop(fake, boxes), fake))
            self.D.requires_grad_(True)
            g_adv_local, g_adv_global = wgan_loss(zero, d_local)[1], wgan_loss(zero, d_global)[1]
        g_adv = cfg.global_wgan_loss_alpha * g_adv_global + g_adv_local
        g_loss = cfg.gan_loss_alpha * g_adv + cfg.l1_loss_alpha * l1 + cfg.ae_loss_alpha * ae
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return {"g_loss": g_loss, "l1": l1, "ae": ae, "g_adv_local": g_adv_local, "g_adv_global": g_adv_global}

    def iteration(self) -> dict[str, float]:
        """5 critic updates (none when pretraining the coarse network), then one generator update."""
        stats: dict[str, torch.Tensor] = {}
        for _ in range(0 if self.cfg.pretrain_coarse else self.cfg.d_steps):
            stats.update(self.d_step())
        stats.update(self.g_step())
        values = {k: float(v.detach()) for k, v in stats.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLoss(f"non-finite {', '.join(bad)} at step {self.step + 1}; the last good checkpoint in "
                                f"{self.run_dir} is kept (try a lower lr, or amp=none)")  # fmt: skip
        self.step += 1
        return {"step": self.step, **values}

    # --- the loop -----------------------------------------------------------------------------------------------
    def _tensorboard(self, rows: list[dict]) -> None:
        """Mirror the log to TensorBoard when the ``tensorboard`` package is installed (optional)."""
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415
            except ImportError:
                self._tb = False
                return
            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        if self._tb:
            for row in rows:
                for key, value in row.items():
                    if key != "step":
                        self._tb.add_scalar(key, value, row["step"])

    def _write_log(self, rows: list[dict], mode: str = "a") -> None:
        path = self.run_dir / "log.csv"
        new = mode == "w" or not path.exists()
        with path.open(mode, newline="") as f:
            writer = csv.DictWriter(f, LOG_KEYS, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def _on_sigint(self, signum, frame) -> None:
        if self._stop:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self._stop = True

    def train(self, on_sample=None) -> None:
        """Run until ``max_iters``; log, call ``on_sample(trainer)`` and checkpoint on the configured steps."""
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        # the bar shows on rank 0 in a terminal only (disable=None), not in logs or notebooks, which get log.csv
        bar = tqdm(total=cfg.max_iters, initial=self.step, disable=True if self.rank else None, unit="it",
                   dynamic_ncols=True)  # fmt: skip
        pending: list[dict] = []
        try:
            while self.step < cfg.max_iters and not self._stop:
                row = self.iteration()
                bar.update(1)
                pending.append(row)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_iters:
                    bar.set_postfix(g=f"{row['g_loss']:.3f}", l1=f"{row['l1']:.3f}", d=f"{row.get('d_loss', 0):.3f}")
                    if self.rank == 0:
                        self._write_log(pending)
                        self._tensorboard(pending)
                    pending = []
                if on_sample is not None and self.rank == 0 and self.step % cfg.sample_every == 0:
                    on_sample(self)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_iters:
                    self.save()
            if self._stop:
                if self.rank == 0:
                    self._write_log(pending)
                path = self.save()
                bar.write(f"interrupted: checkpoint {path} written at step {self.step}")
        finally:
            bar.close()
            signal.signal(signal.SIGINT, previous)


def latest_step(run_dir: str | Path) -> int | None:
    found = list_checkpoints(run_dir)
    return int(found[-1].stem.split("_")[1]) if found else None
