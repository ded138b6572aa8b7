"""Learning-rate schedules configurable from YAML (``model.init_args.lr_scheduler``)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from ptft.errors import ConfigError


class WarmupCosine(LambdaLR):
    """Linear warmup from 0 to each group's learning rate over ``warmup_steps``, then cosine
    decay to ``min_lr_ratio`` times it at ``total_steps`` (held there afterwards). Step it every
    optimizer step: ``lr_scheduler_interval: step``.

    Args:
        optimizer: the optimizer (given by the task).
        warmup_steps: steps of linear warmup.
        total_steps: step at which the cosine reaches its minimum (usually ``trainer.max_steps``).
        min_lr_ratio: final learning rate as a fraction of the peak.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0, last_epoch: int = -1) -> None:
        if warmup_steps < 0 or total_steps <= warmup_steps:
            raise ConfigError(f"lr_scheduler: need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
        if not 0 <= min_lr_ratio <= 1:
            raise ConfigError(f"lr_scheduler.min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
