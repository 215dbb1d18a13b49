r"""Two-stage WGAN-GP training of DeepFill v1 (spec §6-§8), single process or ``torchrun`` data parallel.

One iteration is the official schedule: **5 critic updates, then 1 generator update**, each on a fresh batch with
fresh holes (§7). A critic update scores real images and composites $x_2 m + x(1-m)$ with the local critic (box
crops) and the global critic (whole images), adds the hole-masked gradient penalty, and steps the critics' Adam; a
generator update adds the discounted L1, the auto-encoder loss and $0.001\times$ the adversarial loss and steps the
generator's Adam (lr 1e-4, betas (0.5, 0.9)). ``pretrain_coarse`` trains stage 1 alone with L1 terms.

**The end of training** (`deepfill_min.ema`; not official, off unless asked for): ``lr_decay_iters`` lowers both
learning rates along a cosine over the last iterations, ``ema_decay`` keeps an exponential moving average of the
generator's weights, which the checkpoint stores beside the trained ones and which samples, reports and exports use.

**Input.** Batches come from `deepfill_min.pipeline`: built in ``num_workers`` DataLoader workers from counters
(seed, rank, step, phase, sample), shipped as uint8 and normalised on the device. A run stopped and resumed (with
any number of workers) equals a run straight through, bit for bit on the CPU: the checkpoint holds the models, the
optimisers and the step, and the step is all the data stream needs.

**Host-device synchronisation.** None inside an iteration: the gradient penalty's $\alpha$ arrives with the batch,
Adam is the fused kernel (no ``.item()`` of its step counter), the boxes are Python ints, and the losses wait on
the device until a logging step, where `deepfill_min.runlog` reads them in one transfer and decides NaN and stop.

**Data parallel** (`deepfill_min.distributed`): ``torchrun --nproc_per_node=N -m deepfill_min train ...``. The
generator is wrapped in ``DistributedDataParallel`` (with ``find_unused_parameters`` while pretraining the coarse
network, whose stage 2 gets no gradient); the critics' gradients are averaged in one flat all-reduce. Every rank
draws its own data, stops on the same step (Ctrl-C or NaN on any rank), and waits while rank 0 writes a checkpoint.

**GPU defaults** (``gpu_defaults=true``, on CUDA only): bf16 autocast, channels_last and ``cudnn.benchmark``; the
matmuls stay float32 (TF32 inputs put the attention's output 2.4e-3 off float64 against float32's 8.6e-6,
``benchmarks/tf32_attention.py``). ``gpu_defaults=false`` is strict float32, cuDNN's TF32 convolutions included.

**Memory format on the CPU.** The generator is channels-last whatever ``channels_last`` says (oneDNN's native
layout: its no-grad forward at 128², batch 4, 0.12 s against 0.23 s in float32); ``channels_last=true`` converts
the critics too. In float32 they stay faster in the default layout: their weight gradients come back in it and are
copied into channels-last parameters (14 ms for each 512×256×5×5 gradient), `benchmarks/train_step.py`.

``compile=true`` compiles the generator for both its passes, the no-grad one of the critic updates and the training
one (the critics stay eager: the penalty's double backward is not supported by compiled autograd).
"""

from __future__ import annotations

import signal
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from . import __version__, distributed
from .checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, state_problems
from .config import Config, to_dict
from .data import BuiltinImages, ImageFiles
from .discriminator import Discriminator
from .ema import WeightAverage, learning_rate
from .generator import Generator
from .images import one_line
from .losses import ae_loss, gradient_penalty, l1_loss, wgan_loss
from .masks import local_patch, spatial_discount
from .pipeline import PHASE_G, Batches, BatchStream, default_workers, to_device
from .runlog import LOG_KEYS, NonFiniteLoss, RunLog

__all__ = ["LOG_KEYS", "NonFiniteLoss", "Trainer", "latest_step", "make_dataset"]


def make_dataset(source: str, split: str, cfg: Config):
    if source == "builtin":
        if cfg.image_size[0] != cfg.image_size[1]:
            raise ValueError(f"the built-in images are square; image_size is {cfg.image_size}")
        return BuiltinImages(split, cfg.image_size[0], color_order=cfg.color_order)
    if not source:
        raise ValueError(f"preset {cfg.preset!r} needs data=<folder or .flist> (and val_data=...)")
    return ImageFiles(source, cfg.image_size, cfg.random_crop, cfg.color_order)


class Trainer:
    """Holds the models, optimisers, data stream and log of one run in `run_dir`."""

    def __init__(self, cfg: Config, run_dir: str | Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.world, self.device = distributed.setup(cfg.device)
        self.rank = self.world.rank
        gpu = self.device.type == "cuda" and cfg.gpu_defaults
        self.amp = "bf16" if gpu else cfg.amp
        if self.device.type == "cuda":  # matmuls stay float32: TF32 would cost the attention's fidelity
            torch.backends.cudnn.benchmark = torch.backends.cudnn.allow_tf32 = cfg.gpu_defaults
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.G = Generator(cfg.cnum, attention=cfg.attention, fuse_k=cfg.fuse_k).to(self.device)
        self.D = Discriminator(cfg.image_size, cfg.hole_size, cfg.d_cnum).to(self.device)
        if cfg.channels_last or gpu or self.device.type == "cpu":
            self.G = self.G.to(memory_format=torch.channels_last)
        if cfg.channels_last or gpu:
            self.D = self.D.to(memory_format=torch.channels_last)
        adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)  # fused: no host read of the step count
        self.opt_g = torch.optim.Adam(self.G.parameters(), **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), **adam)
        self.ema = WeightAverage(self.G, cfg.ema_decay) if cfg.ema_decay else None
        self.G_train = self.G_nograd = self.G
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train = torch.nn.parallel.DistributedDataParallel(self.G, device_ids=ids,
                                                                     find_unused_parameters=cfg.pretrain_coarse)
        if cfg.compile:
            self.G_nograd = torch.compile(self.G)
            self.G_train = self.G_nograd if self.world.size == 1 else torch.compile(self.G_train)
        self.data = make_dataset(cfg.data, "train", cfg)
        self.phases = [PHASE_G] if cfg.pretrain_coarse else [*range(cfg.d_steps), PHASE_G]
        workers = default_workers(self.world.size) if cfg.num_workers < 0 else cfg.num_workers
        self.stream = BatchStream(Batches(self.data, cfg, self.rank), self.phases, workers, self.device.type == "cuda",
                                  cfg.warmup_iters)  # fmt: skip
        self.discount = spatial_discount(cfg.hole_size, cfg.spatial_discounting_gamma).to(self.device)
        self.log = RunLog(self.run_dir, self.world, self.device)
        self.step = 0
        self._stop = False

    @property
    def G_eval(self) -> Generator:
        """The generator a run's samples, report and export use: the weight average if ``ema_decay``, else G."""
        return self.ema.averaged if self.ema else self.G

    # --- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step,
                 "config": to_dict(self.cfg), "version": __version__}  # fmt: skip
        if self.ema:
            state["generator_ema"] = self.ema.averaged.state_dict()
        return state

    def load_state_dict(self, state: dict, source: str | Path = "the checkpoint") -> None:
        """Restore a `state_dict`; a state that does not fit this run is a one-line ValueError naming `source`."""
        modules = [("generator", self.G), ("discriminator", self.D)]
        if self.ema:
            modules.append(("generator_ema", self.ema.averaged))
        if ("generator_ema" in state) != bool(self.ema):
            held = "holds a weight average" if "generator_ema" in state else "holds no weight average"
            raise ValueError(f"{source} cannot resume this run: it {held} and the run has ema_decay="
                             f"{self.cfg.ema_decay} (resume with the ema_decay it was written with)")  # fmt: skip
        for key, module in modules:
            problems = state_problems(module.state_dict(), state.get(key))
            if problems:
                raise ValueError(f"{source} cannot resume this run: its {key} does not fit the run's config "
                                 f"({'; '.join(problems)})")  # fmt: skip
        step = state.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"{source} cannot resume this run: its step is {step!r}")
        try:
            for key, module in modules:
                module.load_state_dict(state[key])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise ValueError(f"{source} cannot resume this run: {type(err).__name__} {one_line(err)}") from None
        self.step = step

    def resume(self) -> None:
        """Continue from the newest checkpoint of the run directory (and drop log rows written after it)."""
        found = list_checkpoints(self.run_dir)
        path = found[-1] if found else self.run_dir  # a folder without checkpoints: load_checkpoint says so
        self.load_state_dict(load_checkpoint(path, self.device), path)
        self.log.truncate(self.step)

    def save(self) -> Path | None:
        """Rank 0 writes the checkpoint (atomically); every rank waits until it is complete."""
        path = save_checkpoint(self.state_dict(), self.run_dir, self.cfg.keep_checkpoints) if self.rank == 0 else None
        distributed.barrier(self.world)
        return path

    # --- one update ---------------------------------------------------------------------------------------------
    def _batch(self, phase: int) -> tuple[torch.Tensor, torch.Tensor, list, torch.Tensor]:
        return to_device(self.stream.get(self.step, phase), self.device)

    def batch(self, phase: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [-1, 1], holes (1 or B, 1, H, W) and boxes (1 or B, 4) of this step's `phase`."""
        x, mask, boxes, _ = self._batch(phase)
        return x, mask, torch.tensor(boxes)

    def _autocast(self):
        return torch.autocast(self.device.type, torch.bfloat16) if self.amp == "bf16" else nullcontext()

    def d_step(self, phase: int = 0) -> dict[str, torch.Tensor]:
        """One critic update on batch `phase` of this step."""
        cfg = self.cfg
        x, mask, boxes, alpha = self._batch(phase)
        xin = x * (1 - mask)
        with torch.no_grad(), self._autocast():
            x2 = self.G_nograd(xin, mask).x_stage2.float()
        fake = x2 * mask + xin * (1 - mask)  # the composite
        both, both_boxes = torch.cat([x, fake]), boxes * 2 if len(boxes) > 1 else boxes
        with self._autocast():
            d_local, d_global = (s.float() for s in self.D(local_patch(both, both_boxes), both))
            gp_local = gradient_penalty(self.D.local_score, local_patch(x, boxes), local_patch(fake, boxes),
                                        local_patch(mask, boxes), alpha=alpha[0])  # fmt: skip
            gp_global = gradient_penalty(self.D.global_score, x, fake, mask, alpha=alpha[1])
        real_l, fake_l = d_local.chunk(2)
        real_g, fake_g = d_global.chunk(2)
        gp = cfg.wgan_gp_lambda * (gp_local + gp_global)
        d_loss = wgan_loss(real_l, fake_l)[0] + wgan_loss(real_g, fake_g)[0] + gp
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        if self.world.size > 1:
            distributed.average_gradients(self.D.parameters(), self.world)
        self.opt_d.step()
        return {"d_loss": d_loss, "gp": gp, "d_real_local": real_l.mean(), "d_fake_local": fake_l.mean(),
                "d_real_global": real_g.mean(), "d_fake_global": fake_g.mean()}  # fmt: skip

    def g_step(self) -> dict[str, torch.Tensor]:
        """One generator update on this step's generator batch."""
        cfg = self.cfg
        x, mask, boxes, _ = self._batch(PHASE_G)
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
        if not (cfg.pretrain_coarse or self.warming_up):
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
        if self.ema:
            self.ema.update()
        return {"g_loss": g_loss, "l1": l1, "ae": ae, "g_adv_local": g_adv_local, "g_adv_global": g_adv_global}

    @property
    def warming_up(self) -> bool:
        """Whether this step is one of the first ``warmup_iters``: no critic, no adversarial loss."""
        return self.step < self.cfg.warmup_iters

    def iteration(self) -> dict:
        """5 critic updates (none when pretraining the coarse network or warming up), then one generator update."""
        stats: dict[str, torch.Tensor] = {}
        lr = learning_rate(self.cfg.lr, self.step, self.cfg.max_iters, self.cfg.lr_decay_iters)
        for group in (*self.opt_g.param_groups, *self.opt_d.param_groups):  # not a resumed optimiser's old rate
            group["lr"] = lr
        for phase in self.stream.sampler.phases_at(self.step)[:-1]:
            stats.update(self.d_step(phase))
        stats.update(self.g_step())
        self.step += 1
        self.log.add(self.step, stats)
        return {"step": self.step, **stats}

    # --- the loop -----------------------------------------------------------------------------------------------
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
        try:
            while self.step < cfg.max_iters:
                self.iteration()
                bar.update(1)
                s, last = self.step, self.step == cfg.max_iters
                sample = on_sample is not None and s % cfg.sample_every == 0
                checkpoint = s % cfg.checkpoint_every == 0 or last
                # every rank reaches the same flush points (the single process also flushes at once on Ctrl-C)
                alone_stopping = self._stop and self.world.size == 1
                if not (s % cfg.log_every == 0 or last or checkpoint or sample or alone_stopping):
                    continue
                rows, stop = self.log.flush(self._stop)  # the one sync; raises NonFiniteLoss before any save
                row = rows[-1]
                bar.set_postfix(g=f"{row['g_loss']:.3f}", l1=f"{row['l1']:.3f}", d=f"{row.get('d_loss', 0):.3f}")
                if sample and self.rank == 0:
                    on_sample(self)
                stop = stop or (self._stop and self.world.size == 1)  # a Ctrl-C during the samples counts now
                if checkpoint or stop:
                    path = self.save()
                if stop:
                    if self.rank == 0:
                        bar.write(f"interrupted: checkpoint {path} written at step {self.step}")
                    break
        finally:
            bar.close()
            signal.signal(signal.SIGINT, previous)


def latest_step(run_dir: str | Path) -> int | None:
    found = list_checkpoints(run_dir)
    return int(found[-1].stem.split("_")[1]) if found else None
