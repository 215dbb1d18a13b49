"""Training: exact resume, checkpoints, Ctrl-C, NaN stop, the update schedule's options, and 2-process data parallel."""

from __future__ import annotations

import os
import signal
import socket

import pytest
import small_runs
import torch
import torch.multiprocessing as mp

from deepfill_min.checkpoint import list_checkpoints, load_checkpoint
from deepfill_min.config import make_config
from deepfill_min.train import NonFiniteLoss, Trainer

SMALL = [*small_runs.SMALL, "d_steps=2", "log_every=1", "sample_every=1000"]


def small(*overrides: str):
    return make_config("tiny", overrides=SMALL + list(overrides))


def _assert_same_state(a: dict, b: dict) -> None:
    for key in ("generator", "discriminator"):
        for name, tensor in a[key].items():
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


@pytest.mark.parametrize(
    "options", [["mask_mode=shared"], ["mask_type=brush"], ["amp=bf16"], ["channels_last=true"], ["attention=false"]]
)
def test_options_train_with_finite_losses(tmp_path, options):
    trainer = Trainer(small("max_iters=1", *options), tmp_path)
    row = trainer.iteration()
    assert all(bool(torch.isfinite(torch.as_tensor(v))) for v in row.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, run_dir: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    trainer = Trainer(small("max_iters=2", "checkpoint_every=2", "device=cpu"), run_dir)
    trainer.train()
    torch.save({"G": trainer.G.state_dict(), "D": trainer.D.state_dict()}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_data_parallel_keeps_the_ranks_identical(tmp_path):
    mp.start_processes(_ddp_worker, args=(_free_port(), str(tmp_path / "run"), str(tmp_path)), nprocs=2,
                       start_method="spawn")  # fmt: skip
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for part in ("G", "D"):
        for name, tensor in r0[part].items():
            assert torch.equal(tensor, r1[part][name]), f"{part}.{name} differs between ranks"
    single = Trainer(small("max_iters=1"), tmp_path / "single")  # the same seed, not trained
    assert not torch.equal(single.G.conv1.weight, r0["G"]["conv1.weight"])  # the weights did move
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt_00000002.pt"]  # rank 0 writes
