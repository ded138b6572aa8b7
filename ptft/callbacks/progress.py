"""Plain-text training progress for long runs without Lightning's progress bar (logs, CI, ``make demo``)."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, TextIO

import pytorch_lightning as pl


def format_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(name: str, step: int, total: float, elapsed: float, start_step: int = 0, finished: bool = False) -> str:
    """``stage NAME: step k/N (p%), elapsed T, ETA T``: the ETA from the step rate measured since
    ``start_step`` (the step this run started at, >0 on a resume); ``ETA ?`` before a step is done,
    no total and ETA when ``total`` is unknown (inf), ``done`` instead of the ETA once ``finished``."""
    done = step - start_step
    if not math.isfinite(total) or total <= 0:
        line = f"stage {name}: step {step}, elapsed {format_duration(elapsed)}"
        return line + ", done" if finished else line
    line = f"stage {name}: step {step}/{int(total)} ({100 * step // total:.0f}%), elapsed {format_duration(elapsed)}"
    if finished or step >= total:
        return line + ", done"
    if done <= 0 or elapsed <= 0:
        return line + ", ETA ?"
    return line + f", ETA {format_duration((total - step) * elapsed / done)}"


class StageProgress(pl.Callback):
    """Prints one line when training starts, one every ``every_n_seconds`` while it runs, and one
    when it ends: ``stage NAME: step k/N (p%), elapsed T, ETA T``. N is the run's
    ``trainer.estimated_stepping_batches`` (``max_steps``, or epochs x batches); the ETA comes from
    the step rate measured so far, validation included. Rank zero only.

    Args:
        name: the stage's name in each line.
        every_n_seconds: the interval between lines.
        stream: where lines go (default: sys.stderr, like a progress bar).
    """

    def __init__(self, name: str = "fit", every_n_seconds: float = 15.0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.every_n_seconds = every_n_seconds
        self.stream = stream
        self.clock = clock
        self._start = self._last = 0.0
        self._start_step = 0
        self._total: float = math.inf

    def _print(self, trainer: pl.Trainer, now: float, finished: bool = False) -> None:
        self._last = now
        line = progress_line(self.name, trainer.global_step, self._total, now - self._start, self._start_step, finished)
        print(line, file=self.stream or sys.stderr, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self.clock()
        self._start_step = trainer.global_step
        self._total = float(trainer.estimated_stepping_batches)
        if trainer.is_global_zero:
            self._print(trainer, self._start)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not trainer.is_global_zero or trainer.global_step >= self._total:  # the last line comes at the end
            return
        now = self.clock()
        if now - self._last >= self.every_n_seconds:
            self._print(trainer, now)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._print(trainer, self.clock(), finished=True)
