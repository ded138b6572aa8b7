"""Learning-rate schedules configurable from YAML (``model.init_args.lr_scheduler``), sized from the run."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar

import torch
from pytorch_lightning.callbacks import Timer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ptft.errors import ConfigError

_RUN_STEPS: ContextVar[float | None] = ContextVar("ptft_run_steps", default=None)


def build_scheduler(factory: Callable[[torch.optim.Optimizer], LRScheduler], optimizer: torch.optim.Optimizer, run_steps: int | float) -> LRScheduler:
    """``factory(optimizer)`` (the callable jsonargparse makes of ``lr_scheduler``) while the run is
    ``run_steps`` optimizer steps long (``trainer.estimated_stepping_batches``, which may be inf),
    so a schedule without ``total_steps`` spans the run. Nothing outlives the call."""
    token = _RUN_STEPS.set(run_steps)
    try:
        return factory(optimizer)
    finally:
        _RUN_STEPS.reset(token)


def known_run_length(trainer) -> float | None:
    """The optimizer steps of ``trainer.fit`` when they are known before the data is prepared
    (``trainer.estimated_stepping_batches`` without loading data): ``max_steps`` (inf when -1) for a
    run without an epoch limit; None when the run is ``max_epochs`` x batches per epoch, which needs
    the data. Mirrors Lightning's defaults: ``max_epochs`` unset is no epoch limit when ``max_steps``
    or ``max_time`` is set, else 1000 epochs."""
    max_steps, max_epochs = trainer.max_steps, trainer.max_epochs
    if max_epochs is None:
        limited = max_steps != -1 or any(isinstance(callback, Timer) for callback in trainer.callbacks)
        max_epochs = -1 if limited else 1000
    if max_epochs != -1:
        return None
    return math.inf if max_steps == -1 else max_steps


def run_length() -> int:
    """Optimizer steps of the run whose schedule :func:`build_scheduler` is building (for schedules
    sized from the run); a ConfigError when no run is known or it has no set length."""
    steps = _RUN_STEPS.get()
    if steps is None:
        raise ConfigError("lr_scheduler.init_args.total_steps is not set and no ptft task gave the run's length: set it")
    if math.isinf(steps) or steps < 1:
        raise ConfigError("lr_scheduler: the run has no set length (trainer.max_steps=-1 with trainer.max_epochs=-1 or an "
                          "unsized dataloader): set trainer.max_steps or trainer.max_epochs, or lr_scheduler.init_args.total_steps")
    return int(steps)


class WarmupCosine(LambdaLR):
    """Linear warmup from 0 to each group's learning rate, then cosine decay to ``min_lr_ratio``
    times it at ``total_steps`` (held there afterwards). Step it every optimizer step:
    ``lr_scheduler_interval: step``.

    The warmup is a count of steps (``warmup_steps``, an int) or a share of the schedule
    (``warmup_fraction``, a float in [0, 1), rounded to whole steps); give at most one. Without
    ``total_steps`` the schedule spans the run (``trainer.estimated_stepping_batches``), so a
    changed ``--trainer.max_steps`` or ``max_epochs`` reshapes it; a resumed run also takes its
    shape from the config and the run, and only its position from the checkpoint.

    Args:
        optimizer: the optimizer (given by the task).
        warmup_steps: steps of linear warmup.
        warmup_fraction: warmup as a fraction of ``total_steps``.
        total_steps: step at which the cosine reaches its minimum; default: the run's length.
        min_lr_ratio: final learning rate as a fraction of the peak.
    """

    SHAPE = ("warmup_steps", "total_steps", "min_lr_ratio")  # from the config and the run, not from checkpoints

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int | None = None, warmup_fraction: float | None = None,
                 total_steps: int | None = None, min_lr_ratio: float = 0.0, last_epoch: int = -1) -> None:
        if warmup_steps is not None and warmup_fraction is not None:
            raise ConfigError("lr_scheduler.init_args: give warmup_steps or warmup_fraction, not both (set the other to null)")
        if warmup_fraction is not None and not 0 <= warmup_fraction < 1:
            raise ConfigError(f"lr_scheduler.init_args.warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if not 0 <= min_lr_ratio <= 1:
            raise ConfigError(f"lr_scheduler.init_args.min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        total = run_length() if total_steps is None else total_steps
        warmup = round(warmup_fraction * total) if warmup_fraction is not None else warmup_steps or 0
        if warmup < 0 or total <= warmup:
            length = "total_steps" if total_steps is not None else "the run's length: trainer.max_steps, or max_epochs x batches per epoch"
            raise ConfigError(f"lr_scheduler.init_args: need 0 <= warmup < total steps, got {warmup} and {total} ({length}); "
                              "shorten the warmup or lengthen the schedule")
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup, total, min_lr_ratio
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in self.SHAPE})
