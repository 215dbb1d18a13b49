"""Training: exact resume, checkpoints, Ctrl-C, NaN stop, the update schedule's options, and 2-process data parallel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import small_runs
import torch

from deepfill_min.checkpoint import list_checkpoints, load_checkpoint
from deepfill_min.config import make_config
from deepfill_min.ema import learning_rate
from deepfill_min.generator import Generator
from deepfill_min.pipeline import PHASE_G
from deepfill_min.train import NonFiniteLoss, Trainer
from deepfill_min.weights import load_generator

SMALL = [*small_runs.SMALL, "d_steps=2", "log_every=1", "sample_every=1000"]


def small(*overrides: str):
    return make_config("tiny", overrides=SMALL + list(overrides))


def _assert_same_state(a: dict, b: dict) -> None:
    assert ("generator_ema" in a) == ("generator_ema" in b)
    for key in ("generator", "discriminator", "generator_ema"):
        for name, tensor in a.get(key, {}).items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs"
    for key in ("opt_g", "opt_d"):
        for pid, slots in a[key]["state"].items():
            for slot, value in slots.items():
                assert torch.equal(value, b[key]["state"][pid][slot]), f"{key} {pid} {slot} differs"
    assert a["step"] == b["step"]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_equals_a_straight_run_bit_for_bit(tmp_path, workers):
    """Straight in the training process; stopped and resumed with `workers` loader processes: the same run."""
    straight = Trainer(small("max_iters=4", "checkpoint_every=4", "num_workers=0"), tmp_path / "a")
    straight.train()
    Trainer(small("max_iters=2", "checkpoint_every=2", f"num_workers={workers}"), tmp_path / "b").train()
    resumed = Trainer(small("max_iters=4", "checkpoint_every=4", f"num_workers={workers}"), tmp_path / "b")
    resumed.resume()
    assert resumed.step == 2
    resumed.train()
    _assert_same_state(straight.state_dict(), resumed.state_dict())
    log_a = (tmp_path / "a" / "log.csv").read_text()
    assert log_a == (tmp_path / "b" / "log.csv").read_text() and len(log_a.splitlines()) == 5


def test_a_resumed_run_with_the_weight_average_and_the_decay_equals_a_run_straight_through(tmp_path):
    end = ["ema_decay=0.5", "lr_decay_iters=3", "num_workers=0"]
    straight = Trainer(small("max_iters=4", "checkpoint_every=4", *end), tmp_path / "a")
    straight.train()
    stopped = Trainer(small("max_iters=4", "checkpoint_every=4", *end), tmp_path / "b")
    stopped.iteration(), stopped.iteration(), stopped.save()  # as a Ctrl-C after two iterations
    resumed = Trainer(small("max_iters=4", "checkpoint_every=4", *end), tmp_path / "b")
    resumed.resume()
    assert resumed.step == 2
    resumed.train()
    _assert_same_state(straight.state_dict(), resumed.state_dict())
    assert not torch.equal(straight.G.conv1.weight, straight.G_eval.conv1.weight)


def test_the_weight_average_leaves_the_training_itself_unchanged(tmp_path):
    plain = Trainer(small("max_iters=2", "num_workers=0"), tmp_path / "a")
    averaged = Trainer(small("max_iters=2", "ema_decay=0.5", "num_workers=0"), tmp_path / "b")
    plain.train(), averaged.train()
    state = averaged.state_dict()
    assert "generator_ema" in state
    state.pop("generator_ema")
    _assert_same_state(plain.state_dict(), state)


def test_a_checkpoint_resumes_only_with_the_weight_average_it_was_written_with(tmp_path):
    Trainer(small("max_iters=1", "num_workers=0"), tmp_path / "plain").train()
    Trainer(small("max_iters=1", "ema_decay=0.5", "num_workers=0"), tmp_path / "ema").train()
    with pytest.raises(ValueError, match=r"ckpt_00000001.pt cannot resume this run: it holds no weight average"):
        Trainer(small("max_iters=2", "ema_decay=0.5"), tmp_path / "plain").resume()
    with pytest.raises(ValueError, match=r"it holds a weight average and the run has ema_decay=0.0"):
        Trainer(small("max_iters=2"), tmp_path / "ema").resume()


def test_a_resumed_run_takes_the_configured_rate_not_the_checkpoint_s(tmp_path):
    Trainer(small("max_iters=2", "lr_decay_iters=2", "num_workers=0"), tmp_path).train()
    resumed = Trainer(small("max_iters=3", "num_workers=0"), tmp_path)
    resumed.resume()
    assert resumed.opt_g.param_groups[0]["lr"] < resumed.cfg.lr  # the decayed rate the checkpoint holds
    resumed.iteration()
    assert [g["lr"] for g in (*resumed.opt_g.param_groups, *resumed.opt_d.param_groups)] == [resumed.cfg.lr] * 2


def test_the_learning_rate_is_constant_then_falls_along_a_cosine_to_zero():
    rates = [learning_rate(1e-4, t, 10, 4) for t in range(10)]
    assert rates[:7] == [1e-4] * 7
    assert all(a > b for a, b in zip(rates[6:], rates[7:], strict=False)) and 0 < rates[-1] < 0.15e-4
    assert rates[8] == pytest.approx(0.5e-4)  # half way through the decay
    assert [learning_rate(1e-4, t, 10, 0) for t in range(10)] == [1e-4] * 10


def test_both_optimisers_take_the_scheduled_rate(tmp_path):
    trainer = Trainer(small("max_iters=3", "lr_decay_iters=2", "num_workers=0"), tmp_path)
    for step in range(3):
        trainer.iteration()
        expected = learning_rate(trainer.cfg.lr, step, 3, 2)
        assert [g["lr"] for g in (*trainer.opt_g.param_groups, *trainer.opt_d.param_groups)] == [expected] * 2


def test_the_weight_average_follows_its_recurrence_and_is_what_loads(tmp_path):
    """θ̄_0 = θ_0 and θ̄_t = β θ̄_{t-1} + (1 - β) θ_t after each generator update; the checkpoint loads as θ̄."""
    trainer = Trainer(small("max_iters=3", "warmup_iters=1", "ema_decay=0.75", "num_workers=0"), tmp_path)
    expected = {k: v.clone().double() for k, v in trainer.G.named_parameters()}
    for _ in range(3):
        trainer.iteration()
        for name, p in trainer.G.named_parameters():
            expected[name] = 0.75 * expected[name] + 0.25 * p.detach().double()
    for name, p in trainer.G_eval.named_parameters():
        assert torch.allclose(p.double(), expected[name], rtol=0, atol=1e-6), name
    trainer.save()
    G, _ = load_generator(tmp_path)
    assert all(torch.equal(p, q) for p, q in zip(G.parameters(), trainer.G_eval.parameters(), strict=True))
    assert not torch.equal(G.conv1.weight, trainer.G.conv1.weight)


def test_checkpoints_hold_everything_and_only_the_last_k_stay(tmp_path):
    Trainer(small("max_iters=3", "checkpoint_every=1", "keep_checkpoints=2"), tmp_path).train()
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["ckpt_00000002.pt", "ckpt_00000003.pt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    state = load_checkpoint(tmp_path)
    assert state["step"] == 3 and state["config"]["cnum"] == 8 and "version" in state
    assert {"generator", "discriminator", "opt_g", "opt_d", "step", "config"} <= set(state)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="not a deepfill-min checkpoint"):
        load_checkpoint(tmp_path / "log.csv")


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(small("max_iters=3", "checkpoint_every=1"), tmp_path)
    trainer.train()  # steps 1-3, checkpoint at 3
    trainer.cfg.max_iters = 5
    trainer.g_step = lambda: {"g_loss": torch.tensor(float("nan"))}
    with pytest.raises(NonFiniteLoss, match="non-finite g_loss at step 4"):
        trainer.train()
    assert load_checkpoint(tmp_path)["step"] == 3


def test_ctrl_c_finishes_the_iteration_and_saves(tmp_path):
    trainer = Trainer(small("max_iters=50", "checkpoint_every=50", "sample_every=2"), tmp_path)
    trainer.train(on_sample=lambda t: os.kill(os.getpid(), signal.SIGINT))
    assert trainer.step == 2 and load_checkpoint(tmp_path)["step"] == 2


def test_pretrain_coarse_leaves_the_critics_untouched(tmp_path):
    trainer = Trainer(small("max_iters=2", "pretrain_coarse=true"), tmp_path)
    before = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    trainer.train()
    assert all(torch.equal(before[k], v) for k, v in trainer.D.state_dict().items())
    assert (tmp_path / "log.csv").read_text().splitlines()[1].split(",")[6] == ""  # no d_loss column value


def test_warmup_trains_the_generator_alone_then_the_schedule_starts(tmp_path):
    """The first ``warmup_iters`` iterations: one generator batch each, no critic update, no adversarial term."""
    trainer = Trainer(small("max_iters=3", "warmup_iters=2"), tmp_path)
    before = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    asked = []
    get = trainer.stream.get
    trainer.stream.get = lambda step, phase: asked.append((step, phase)) or get(step, phase)
    rows = [trainer.iteration() for _ in range(2)]
    assert asked == [(0, PHASE_G), (1, PHASE_G)] and all(float(r["g_adv_local"]) == 0 for r in rows)
    assert all(torch.equal(before[k], v) for k, v in trainer.D.state_dict().items())
    trainer.iteration()
    assert asked[2:] == [(2, 0), (2, 1), (2, PHASE_G)]
    assert not all(torch.equal(before[k], v) for k, v in trainer.D.state_dict().items())


def test_a_run_resumed_inside_the_warmup_equals_a_run_straight_through(tmp_path):
    straight = Trainer(small("max_iters=3", "warmup_iters=2", "num_workers=0"), tmp_path / "a")
    straight.train()
    first = Trainer(small("max_iters=1", "warmup_iters=2", "num_workers=0"), tmp_path / "b")
    first.train()
    second = Trainer(small("max_iters=3", "warmup_iters=2", "num_workers=0"), tmp_path / "b")
    second.resume()
    second.train()
    _assert_same_state(straight.state_dict(), second.state_dict())


@pytest.mark.parametrize(
    "options", [["mask_mode=shared"], ["mask_type=brush"], ["amp=bf16"], ["channels_last=true"], ["attention=false"]]
)
def test_options_train_with_finite_losses(tmp_path, options):
    trainer = Trainer(small("max_iters=1", *options), tmp_path)
    row = trainer.iteration()
    assert all(bool(torch.isfinite(torch.as_tensor(v))) for v in row.values())


def test_on_the_cpu_the_generator_is_channels_last_and_the_critics_only_when_asked(tmp_path):
    last = torch.channels_last
    for flag, critics_last in (("false", False), ("true", True)):
        trainer = Trainer(small("device=cpu", f"channels_last={flag}", "num_workers=0"), tmp_path / flag)
        assert trainer.G.conv1.weight.is_contiguous(memory_format=last)
        assert trainer.D.discriminator_local.conv2.weight.is_contiguous(memory_format=last) == critics_last


def _torchrun(tmp_path, name: str, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    """`deepfill-min train` under torchrun with 2 CPU processes, as users launch it (tests/ddp_run.py records)."""
    out = tmp_path / name
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(Path(__file__).parent / "ddp_run.py"), str(out), *args], capture_output=True,
                          text=True, timeout=300, env=env)  # fmt: skip
    return done, out


def _batches(out: Path, rank: int) -> dict[tuple[int, int], int]:
    lines = (out / f"batches_rank{rank}.txt").read_text().split("\n")
    return {(int(s), int(p)): int(c) for s, p, c in (line.split() for line in lines if line)}


DDP = ["train", *small_runs.SMALL, "d_steps=2", "log_every=1", "sample_every=1000", "device=cpu", "num_workers=0"]


def test_two_ranks_stopped_and_resumed_equal_two_ranks_straight_through(tmp_path):
    straight, a = _torchrun(tmp_path, "a", "--", *DDP, "--run-dir", str(tmp_path / "A"), "max_iters=4",
                            "checkpoint_every=4")  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-3000:]
    first, b = _torchrun(tmp_path, "b1", "--", *DDP, "--run-dir", str(tmp_path / "B"), "max_iters=2",
                         "checkpoint_every=2")  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    resumed, b2 = _torchrun(tmp_path, "b2", "--", "train", "--run-dir", str(tmp_path / "B"), "--resume",
                            "max_iters=4", "checkpoint_every=4")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_state(load_checkpoint(tmp_path / "A"), load_checkpoint(tmp_path / "B"))
    assert (tmp_path / "A" / "log.csv").read_text() == (tmp_path / "B" / "log.csv").read_text()
    r0, r1 = (torch.load(a / f"rank{r}.pt") for r in (0, 1))
    for part in ("G", "D"):  # the replicas stay identical
        assert all(torch.equal(t, r1[part][k]) for k, t in r0[part].items()), part
    for rank in (0, 1):  # after the resume, each rank draws the batches it drew in the straight run
        after = _batches(b2, rank)
        assert sorted(after) == sorted((s, p) for s in (2, 3) for p in (0, 1, -1))
        assert all(_batches(a, rank)[key] == count for key, count in after.items())
    assert all(_batches(b2, 0)[key] != count for key, count in _batches(b2, 1).items())  # and the ranks differ


def test_two_ranks_pretrain_the_coarse_network(tmp_path):
    done, out = _torchrun(tmp_path, "p", "--", *DDP, "--run-dir", str(tmp_path / "P"), "max_iters=2",
                          "pretrain_coarse=true")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(t, r1["G"][k]) for k, t in r0["G"].items())
    single = Trainer(small("max_iters=1"), tmp_path / "single")  # the same seed, not trained
    assert not torch.equal(single.G.conv1.weight, r0["G"]["conv1.weight"])  # the coarse network moved
    assert torch.equal(single.G.allconv17.weight, r0["G"]["allconv17.weight"])  # stage 2 did not


def test_a_nan_on_one_rank_stops_both_at_the_same_step(tmp_path):
    done, _ = _torchrun(tmp_path, "n", "--nan-at", "3", "--", *DDP, "--run-dir", str(tmp_path / "N"), "max_iters=6",
                        "checkpoint_every=1")  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.count("deepfill-min: error: non-finite g_loss at step 3") == 2, done.stderr[-3000:]
    assert [p.name for p in list_checkpoints(tmp_path / "N")][-1] == "ckpt_00000002.pt"


def test_compiled_iterations_match_eager_ones_and_the_generator_has_no_graph_breaks(tmp_path):
    """compile=true (inductor's C++ code on the CPU) covers both generator passes; two iterations stay within 1e-5
    of eager ones (fused kernels reorder float sums: the differences seen are below 1e-6)."""
    G = Generator(8)
    x, mask = torch.randn(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[0, :, 4:20, 6:22], mask[1, :, 12:28, 10:26] = 1, 1
    assert torch._dynamo.explain(G)(x * (1 - mask), mask).graph_break_count == 0
    eager = Trainer(small("num_workers=0", "d_steps=1"), tmp_path / "eager")
    compiled = Trainer(small("num_workers=0", "d_steps=1", "compile=true"), tmp_path / "compiled")
    assert compiled.G_nograd is compiled.G_train is not compiled.G  # one compiled module for both passes
    for _ in range(2):  # the second iteration has other holes: a compiled graph must not depend on them
        a, b = eager.iteration(), compiled.iteration()
        for key in a:
            assert torch.allclose(torch.as_tensor(a[key]), torch.as_tensor(b[key]), rtol=1e-5, atol=1e-6), key
    for (name, p), q in zip(eager.G.named_parameters(), compiled.G.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-5), name


def test_the_attention_trains_and_loads_with_the_configured_fuse_k(tmp_path):
    """`fuse_k` reaches the trained generator, its checkpoint, and the generator `load_generator` builds from it."""
    trainer = Trainer(small("fuse_k=5", "num_workers=0"), tmp_path)
    assert trainer.G.contextual_attention.kwargs["fuse_k"] == 5
    trainer.save()
    G, _ = load_generator(tmp_path)
    assert G.contextual_attention.kwargs["fuse_k"] == 5
