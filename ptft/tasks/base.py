"""Machinery shared by every ptft LightningModule."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from ptft.backbones.base import Backbone
from ptft.errors import ConfigError, DivergenceError
from ptft.handoff import folded_state_dict
from ptft.reliability import PreemptionCheckpoint, install_atomic_checkpoint_io, restore_rng_states, rng_states
from ptft.schedules import build_scheduler
from ptft.weight_decay import split_weight_decay


# Init arguments that are objects, not hyperparameters: left out of save_hyperparameters.
NOT_HYPERPARAMETERS = ["backbone", "optimizer", "lr_scheduler"]

NonFinitePolicy = Literal["raise", "skip"]


class PtftTask(pl.LightningModule):
    """A task around ``self.backbone``: the only part handed from pretraining to fine-tuning.

    Checkpoints carry the backbone's spec (``checkpoint["ptft"]["backbone"]``), so ``ptft export``
    and fine-tuning rebuild it without repeating its configuration, plus the DataModule's
    ``tokenizer`` (text) and ``label_names`` (classification) when it has them.

    **Non-finite guard.** Every subclass's ``training_step`` is wrapped (in ``__init_subclass__``,
    nothing to call): with automatic optimisation, when the loss it returns (a tensor, or a dict's
    ``"loss"``) is NaN or infinite on any rank (all ranks decide together), the step either raises
    :class:`DivergenceError` naming the step, ``nonfinite_loss_name`` and the value on every rank,
    before backward and the optimizer step, so weights and ``last.ckpt`` stay those of the last
    finite step (``on_nonfinite="raise"``), or is skipped (``"skip"``): the loss is replaced by a
    zero that reaches every parameter (DDP stays in step), the gradients are dropped in
    ``on_before_optimizer_step`` (so subclasses overriding it call ``super()``), weights, optimizer
    state and buffers such as BatchNorm statistics stay as they were, and ``train/skipped_steps``
    counts it (the step still counts towards ``max_steps`` and a per-step LR scheduler still steps;
    with gradient accumulation the whole accumulated step is dropped; not for 16-mixed's
    GradScaler, which skips inf gradients itself). Manual optimisation (the GAN) keeps its own
    guard. The check costs one host sync (and one all-gather under DDP) per step.

    **Resume.** The global RNG states (torch, CUDA, numpy, Python) go into every checkpoint and are
    restored at the first training step after ``--ckpt_path``, so noise, masks and dropout continue
    as in the uninterrupted run; checkpoints are written atomically (:mod:`ptft.reliability`).

    Args:
        backbone: the shared network.
        optimizer: optimizer class and arguments, e.g. ``{class_path: torch.optim.AdamW, init_args: {lr: 1e-3}}``.
        lr_scheduler: optional LR scheduler class and arguments.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        lr_scheduler_monitor: metric a ``ReduceLROnPlateau`` scheduler watches.
        on_nonfinite: ``raise`` (stop with DivergenceError) or ``skip`` (drop the step and count it
            in ``train/skipped_steps``) when the training loss is NaN or infinite.
        torch_compile: ``torch.compile`` the networks in place, region by region
            (:meth:`compile_regions`: each Transformer block, each conv stage, the heads), which keeps
            compile times short and checkpoints unchanged. Off by default: on CPU it measured no
            faster (benchmarks/throughput.py ``--compile``) and costs seconds to compile.
    """

    nonfinite_loss_name: ClassVar[str] = "train/loss"  # how the guard names the loss training_step returns
    on_nonfinite: NonFinitePolicy = "raise"
    skipped_steps: int = 0
    exclude_from_weight_decay: bool = True  # biases, norms, embeddings and tokens go to weight_decay-0 groups

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("training_step")
        if step is None or getattr(step, "_ptft_guarded", False):
            return

        @functools.wraps(step)
        def guarded_training_step(self: PtftTask, *args: Any, **kw: Any) -> Any:
            return self._guarded_training_step(step, *args, **kw)

        guarded_training_step._ptft_guarded = True  # type: ignore[attr-defined]
        cls.training_step = guarded_training_step

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        lr_scheduler_monitor: str = "val/loss",
        on_nonfinite: NonFinitePolicy = "raise",
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        if on_nonfinite not in ("raise", "skip"):
            raise ConfigError(f"model.on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        if not isinstance(backbone, Backbone):
            raise ConfigError(f"model.backbone must be a ptft.backbones.Backbone, got {type(backbone).__name__}")
        self.backbone = backbone
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.lr_scheduler_monitor = lr_scheduler_monitor
        self.on_nonfinite = on_nonfinite
        self.torch_compile = torch_compile
        self.skipped_steps = 0
        self._in_training_step = False
        self._rng_to_restore: dict[str, Any] | None = None
        self._skip_update = False

    def _guarded_training_step(self, step, *args: Any, **kwargs: Any) -> Any:
        if self._in_training_step or self._trainer is None:  # a subclass calling super().training_step, or no trainer
            return step(self, *args, **kwargs)
        if self._rng_to_restore is not None:  # first step after a resume: continue the saved random streams
            restore_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        if not self.automatic_optimization:
            return step(self, *args, **kwargs)
        skip = self.on_nonfinite == "skip"
        buffers = {name: b.detach().clone() for name, b in self.named_buffers()} if skip else None
        self._in_training_step = True
        try:
            output = step(self, *args, **kwargs)
        finally:
            self._in_training_step = False
        loss = output.get("loss") if isinstance(output, Mapping) else output
        if isinstance(loss, torch.Tensor):
            values = self.all_gather(loss.detach().float().reshape(1)).flatten()  # every rank's loss: all decide together
            if not torch.isfinite(values).all():
                shown = ", ".join(f"{v:g}" for v in values.tolist())
                where = f"at step {self.trainer.global_step}, epoch {self.current_epoch}"
                if not skip:
                    raise DivergenceError(
                        f"{self.nonfinite_loss_name} is not finite ({shown}) {where}: stopped before the update, so "
                        "weights and checkpoints are those of the last finite step; try a lower learning rate, "
                        "gradient clipping (--trainer.gradient_clip_val) or --model.on_nonfinite=skip"
                    )
                with torch.no_grad():
                    own = dict(self.named_buffers())
                    for name, saved in buffers.items():
                        own[name].copy_(saved)
                self.skipped_steps += 1
                rank_zero_warn(f"{self.nonfinite_loss_name} is not finite ({shown}) {where}: step skipped ({self.skipped_steps} so far)")
                # Lightning refuses a None loss under DDP: a zero loss reaching every parameter keeps
                # DDP's gradient reduction in step on all ranks, and on_before_optimizer_step then
                # drops the (zero) gradients, so the optimizer changes neither weights nor its state.
                output = sum((p * 0).sum() for p in self.parameters() if p.requires_grad)
                self._skip_update = True
        if skip:
            self.log("train/skipped_steps", float(self.skipped_steps))
        return output

    def check_data(self, datamodule: pl.LightningDataModule | None) -> None:
        """Raise a ConfigError if this task cannot use ``datamodule``; the CLI calls it before a
        trainer writes anything, and ``setup`` again for runs started from Python."""

    def setup(self, stage: str) -> None:
        self.check_data(self.trainer.datamodule)
        install_atomic_checkpoint_io(self.trainer)

    def compile_regions(self) -> list[nn.Module]:
        """The modules ``torch_compile`` compiles (each through its ``__call__``): the backbone's
        :meth:`~ptft.backbones.Backbone.compile_regions`; tasks add their heads."""
        return self.backbone.compile_regions()

    def configure_model(self) -> None:
        if self.torch_compile and not getattr(self, "_compiled", False):
            for module in self.compile_regions():
                module.compile()
            self._compiled = True

    def on_before_optimizer_step(self, optimizer) -> None:
        if self._skip_update:  # the non-finite guard skipped this step: no gradients, so no update
            self._skip_update = False
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    parameter.grad = None

    def configure_callbacks(self) -> list[pl.Callback]:
        """Saves last.ckpt on SIGTERM (see :class:`ptft.reliability.PreemptionCheckpoint`);
        subclasses that add callbacks extend this list."""
        return [PreemptionCheckpoint()]

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameter groups handed to the optimizer; tasks override this for per-part learning
        rates: a group's ``lr`` replaces the optimizer's, its ``lr_scale`` multiplies the result."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def weight_decay_groups(self, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``groups`` split into decayed and ``weight_decay: 0`` halves (:func:`~ptft.weight_decay.split_weight_decay`)
        unless ``exclude_from_weight_decay`` is False."""
        return split_weight_decay(groups, self) if self.exclude_from_weight_decay else groups

    def configure_optimizers(self):
        optimizer = self.optimizer(self.weight_decay_groups(self.parameter_groups()))
        for group in optimizer.param_groups:  # groups may scale the optimizer's lr (layer-wise decay)
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.lr_scheduler is None:
            return optimizer
        scheduler = build_scheduler(self.lr_scheduler, optimizer, self.trainer.estimated_stepping_batches)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.lr_scheduler_interval, "monitor": self.lr_scheduler_monitor},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cls = type(self)
        checkpoint["ptft"] = {"task": f"{cls.__module__}.{cls.__qualname__}", "backbone": self.backbone.spec(),
                              "skipped_steps": self.skipped_steps, "rng": rng_states()}
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None:  # text models: fine-tuning and generation need the exact vocabulary
            checkpoint["ptft"]["tokenizer"] = tokenizer.json
        labels = getattr(datamodule, "label_names", None)
        if labels is not None:
            checkpoint["ptft"]["labels"] = list(labels)
        folded = folded_state_dict(self.backbone)
        if folded is not None:  # parametrized weights (spectral norm): store them as a plain backbone has them
            checkpoint["ptft"]["backbone_state_dict"] = folded

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get("ptft", {})
        self.skipped_steps = info.get("skipped_steps", 0)
        self._rng_to_restore = info.get("rng")
