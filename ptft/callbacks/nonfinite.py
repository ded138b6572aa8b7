"""Stop (or skip) a training step whose loss is NaN or infinite, before it changes anything."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from ptft.errors import ConfigError, DivergenceError

NonFinitePolicy = Literal["raise", "skip"]


class NonFiniteGuard(pl.Callback):
    """Checks the loss of every automatically optimised training step before backward.

    When the loss is NaN or infinite on any rank (all ranks decide together: one all-gather of a
    scalar, so one host sync per step), ``raise`` stops the run with :class:`DivergenceError`
    naming the step, ``loss_name`` and the value on every rank, before backward and the optimizer
    step, so weights and ``last.ckpt`` stay those of the last finite step. ``skip`` drops the
    step instead: buffers (BatchNorm statistics) are put back as they were before the step, the
    gradients are dropped before the optimizer step (so weights and optimizer state stay as they
    were; DDP still reduces the gradients, all ranks in step), and ``train/skipped_steps`` counts
    it (saved in checkpoints as ``checkpoint["ptft"]["skipped_steps"]``). A skipped step still
    counts towards ``max_steps``; with gradient accumulation the whole accumulated step is dropped.
    Manual optimisation (the GAN) keeps its own guard. Every ptft task adds this callback
    (``model.on_nonfinite``); the task's ``nonfinite_loss_name`` names the loss.

    Args:
        policy: ``raise`` or ``skip``.
        loss_name: how the messages name the loss.
    """

    def __init__(self, policy: NonFinitePolicy = "raise", loss_name: str = "train/loss") -> None:
        if policy not in ("raise", "skip"):
            raise ConfigError(f"model.on_nonfinite must be 'raise' or 'skip', got {policy!r}")
        self.policy, self.loss_name = policy, loss_name
        self.skipped_steps = 0
        self._buffers: dict[str, torch.Tensor] | None = None
        self._drop_update = self._restore_buffers = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.policy == "skip" and pl_module.automatic_optimization:
            self._buffers = {name: b.detach().clone() for name, b in pl_module.named_buffers()}

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if not pl_module.automatic_optimization:
            return
        values = pl_module.all_gather(loss.detach().float().reshape(1)).flatten()  # every rank's loss
        if torch.isfinite(values).all():
            return
        shown = ", ".join(f"{v:g}" for v in values.tolist())
        where = f"at step {trainer.global_step}, epoch {trainer.current_epoch}"
        if self.policy == "raise":
            raise DivergenceError(
                f"{self.loss_name} is not finite ({shown}) {where}: stopped before the update, so weights and "
                "checkpoints are those of the last finite step; try a lower learning rate, gradient clipping "
                "(--trainer.gradient_clip_val) or --model.on_nonfinite=skip"
            )
        self.skipped_steps += 1
        self._drop_update = self._restore_buffers = True
        rank_zero_warn(f"{self.loss_name} is not finite ({shown}) {where}: step skipped ({self.skipped_steps} so far)")

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restore_buffers:  # after backward: BatchNorm's backward reads its running statistics
            self._restore_buffers = False
            with torch.no_grad():
                own = dict(pl_module.named_buffers())
                for name, saved in (self._buffers or {}).items():
                    own[name].copy_(saved)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        if self._drop_update:  # no gradients, so the optimizer changes neither the weights nor its state
            self._drop_update = False
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    parameter.grad = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._buffers = None
        if self.policy == "skip" and pl_module.automatic_optimization:
            pl_module.log("train/skipped_steps", float(self.skipped_steps))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault("ptft", {})["skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.skipped_steps = checkpoint.get("ptft", {}).get("skipped_steps", 0)
