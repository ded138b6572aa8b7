"""Test-only callbacks for the reliability tests (importable by `ptft` subprocesses: tests/ is on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytorch_lightning as pl
import torch


class PoisonBatch(pl.Callback):
    """Fills the images of the batch at optimizer step ``at`` with NaN (on ``rank`` only, or every rank)."""

    def __init__(self, at: int, rank: int | None = None) -> None:
        self.at = at
        self.rank = rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at and self.rank in (None, trainer.global_rank):
            batch[0].fill_(float("nan"))


class RecordLosses(pl.Callback):
    """Appends ``{"step": global step before the update, "rank", losses...}`` lines to ``path``; needs
    ``trainer.log_every_n_steps=1``, since ptft records per-step values only on the steps a logger writes."""

    KEYS = ("train/loss", "train/d_loss", "train/g_loss")

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_fit_start(self, trainer, pl_module):
        assert trainer.log_every_n_steps == 1, "RecordLosses needs --trainer.log_every_n_steps=1"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_rank != 0:
            return
        metrics = trainer.callback_metrics
        record = {"step": trainer.global_step, **{k: float(metrics[k]) for k in self.KEYS if k in metrics}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class KillAt(pl.Callback):
    """SIGKILLs this process (or sends ``signal``) at the start of the batch after ``step`` optimizer steps."""

    def __init__(self, step: int, signal_name: str = "SIGKILL") -> None:
        self.step = step
        self.signum = getattr(signal, signal_name)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and trainer.global_rank == 0:
            os.kill(os.getpid(), self.signum)


class RaiseOnRank(pl.Callback):
    """Raises on one rank at one step, as a bug or a lost device would; each rank writes its pid to ``pid_dir``."""

    def __init__(self, rank: int = 1, step: int = 2, pid_dir: str | None = None) -> None:
        self.rank = rank
        self.step = step
        self.pid_dir = Path(pid_dir) if pid_dir else None

    def on_fit_start(self, trainer, pl_module):
        if self.pid_dir is not None:
            self.pid_dir.mkdir(parents=True, exist_ok=True)
            (self.pid_dir / f"rank{trainer.global_rank}.pid").write_text(str(os.getpid()))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            raise RuntimeError(f"injected failure on rank {self.rank} at step {self.step}")


class SlowSteps(pl.Callback):
    """Sleeps after each batch (gives a test time to signal a running process) and marks step ``mark_at`` in a file."""

    def __init__(self, seconds: float, mark: str, mark_at: int = 1) -> None:
        self.seconds = seconds
        self.mark = Path(mark)
        self.mark_at = mark_at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.mark_at and trainer.global_rank == 0:
            self.mark.write_text(str(trainer.global_step))
        time.sleep(self.seconds)


def state_digest(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Jitter(pl.Callback):
    """Sleeps a random time up to ``seconds`` at five points of each training step and after each
    validation batch, on every rank (each its own random sequence), so the ranks wait for each other
    in collectives at random moments; rank 0 writes the number of steps done to ``mark``."""

    def __init__(self, seconds: float, mark: str) -> None:
        self.seconds = seconds
        self.mark = Path(mark)
        self.random = random.Random()

    def sleep(self, *args) -> None:
        time.sleep(self.random.uniform(0, self.seconds))

    on_train_batch_start = on_before_backward = on_after_backward = on_before_optimizer_step = on_validation_batch_end = sleep

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_rank == 0:
            self.mark.write_text(str(trainer.global_step))
        self.sleep()
