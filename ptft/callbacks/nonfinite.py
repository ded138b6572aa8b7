"""Stop at (or skip) a training step whose loss is NaN or infinite, before any checkpoint holds its update."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from ptft.errors import ConfigError, DivergenceError

NonFinitePolicy = Literal["raise", "skip"]


def shown(values: torch.Tensor) -> str:
    return ", ".join(f"{v:g}" for v in values.tolist())


def at(step: int, epoch: int) -> str:
    return f"at step {step}, epoch {epoch}"


class NonFiniteGuard(pl.Callback):
    """Checks the loss of every automatically optimised training step.

    Every rank's loss is gathered on the device each step (all ranks decide together). ``raise``
    (the default) reads it without a host sync: the values are copied to host memory without
    blocking and checked when the next step starts, and before any checkpoint is written. When the
    loss was NaN or infinite on any rank, the run stops with :class:`DivergenceError` naming that
    step, ``loss_name`` and the value on every rank; that step's update is never saved, so
    ``last.ckpt`` (and every checkpoint) holds the weights of the last finite step. ``skip`` must
    decide before the optimizer step, so it reads the loss at once (one host sync per step) and
    drops the step instead: buffers (BatchNorm statistics) are put back as they were before the step, the
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
        self._pending: tuple[torch.Tensor, torch.cuda.Event | None, tuple[int, int]] | None = None  # raise: the last loss not yet read

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.policy == "skip" and pl_module.automatic_optimization:
            self._buffers = {name: b.detach().clone() for name, b in pl_module.named_buffers()}

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if not pl_module.automatic_optimization:
            return
        values = loss.detach().float().reshape(1)
        if trainer.world_size > 1:
            values = pl_module.all_gather(values).flatten()  # every rank's loss, on the device
        where = (trainer.global_step, trainer.current_epoch)
        if self.policy == "raise":
            self.check_pending()  # the previous step's loss: copied long ago, so reading it waits for nothing
            host, event = values, None  # on the CPU the loss is already on the host
            if values.is_cuda:
                host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
                host.copy_(values, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            self._pending = (host, event, where)
            return
        if torch.isfinite(values).all():
            return
        self.skipped_steps += 1
        self._drop_update = self._restore_buffers = True
        rank_zero_warn(f"{self.loss_name} is not finite ({shown(values)}) {at(*where)}: step skipped ({self.skipped_steps} so far)")

    def check_pending(self) -> None:
        """Raise :class:`DivergenceError` if the last loss copied to the host was not finite."""
        if self._pending is None:
            return
        host, event, where = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        if not torch.isfinite(host).all():
            raise DivergenceError(
                f"{self.loss_name} is not finite ({shown(host)}) {at(*where)}: stopped; that step's update is never saved, so "
                "checkpoints hold the weights of the last finite step; try a lower learning rate, gradient clipping "
                "(--trainer.gradient_clip_val) or --model.on_nonfinite=skip"
            )

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

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check_pending()  # the run's last step

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.check_pending()  # raising here writes nothing: no checkpoint holds a non-finite step's update
        checkpoint.setdefault("ptft", {})["skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.skipped_steps = checkpoint.get("ptft", {}).get("skipped_steps", 0)
