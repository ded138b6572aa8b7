"""The base of every ptft LightningModule: a backbone, the training options every task shares, and
the run machinery (as callbacks) every run gets."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.trainer.connectors.logger_connector.fx_validator import _FxValidator
from torch import nn

from ptft.backbones.base import Backbone
from ptft.callbacks import AtomicCheckpoints, CheckpointMetadata, FinalCheckpoint, LoaderPosition, NonFiniteGuard, PreemptionCheckpoint, RNGStates
from ptft.callbacks.batch_hooks import skip_unimplemented_batch_hooks
from ptft.callbacks.nonfinite import NonFinitePolicy
from ptft.data.spec import DataSpec
from ptft.errors import ConfigError
from ptft.schedules import build_scheduler
from ptft.weight_decay import split_weight_decay


class PtftTask(pl.LightningModule):
    """A task around ``self.backbone``, the part handed from pretraining to fine-tuning. A subclass
    holds its objective only: its parts, its loss and what it logs. It takes its own arguments
    plus ``**kwargs``, which it passes on to this class, so the options below are declared once
    and still listed by ``ptft fit --model.help <Task>``. Hyperparameters are saved here.

    Every run gets the run machinery as callbacks (:meth:`configure_callbacks`): the non-finite
    guard (:class:`~ptft.callbacks.NonFiniteGuard`), RNG states in checkpoints
    (:class:`~ptft.callbacks.RNGStates`), the train loader's position on resume
    (:class:`~ptft.callbacks.LoaderPosition`), ``last.ckpt`` on SIGTERM
    (:class:`~ptft.callbacks.PreemptionCheckpoint`), ``last.ckpt`` at a normal end
    (:class:`~ptft.callbacks.FinalCheckpoint`), atomic and ``weights_only`` checkpoint IO
    (:class:`~ptft.callbacks.AtomicCheckpoints`) and the ``checkpoint["ptft"]`` metadata
    (:class:`~ptft.callbacks.CheckpointMetadata`). At setup, the per-batch hooks that a run's
    callbacks do not implement are taken out of Lightning's per-batch calls
    (:func:`~ptft.callbacks.batch_hooks.skip_unimplemented_batch_hooks`).

    Per-step training values (``self.log`` in ``training_step`` and the batch hooks, ``on_step`` only)
    are recorded on the steps a logger writes (every ``trainer.log_every_n_steps``), at the end of each
    epoch and in the run's last batch; between those steps ``trainer.callback_metrics`` keeps the last
    recorded value. Lightning records every step, which costs about 1% of a small model's step time
    (benchmarks/nanogpt_recipe.py). Epoch-level values (``on_epoch=True``) still see every step.

    Args:
        backbone: the shared network.
        optimizer: optimizer class and arguments, e.g. ``{class_path: torch.optim.AdamW, init_args: {lr: 1e-3}}``.
        lr_scheduler: optional LR scheduler class and arguments.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        lr_scheduler_monitor: metric a ``ReduceLROnPlateau`` scheduler watches.
        on_nonfinite: ``raise`` (stop with DivergenceError) or ``skip`` (drop the step and count it
            in ``train/skipped_steps``) when the training loss is NaN or infinite.
        exclude_from_weight_decay: put norm weights, biases, embeddings, position embeddings and
            cls/mask tokens (every parameter that is not the weight of a Linear or convolution) in
            groups with ``weight_decay: 0`` (:func:`~ptft.weight_decay.split_weight_decay`); layer-decay
            groups keep the split. False: the optimizer's weight decay applies to every parameter.
        torch_compile: ``torch.compile`` the networks in place, region by region
            (:meth:`compile_regions`: each Transformer block, each conv stage, the heads), which keeps
            compile times short and checkpoints unchanged. Off by default: on CPU it measured no
            faster (benchmarks/throughput.py ``--compile``) and costs seconds to compile.
        data_spec: what the model needs to know about its data (:class:`~ptft.data.spec.DataSpec`);
            linked from ``data.spec`` by the ``ptft`` CLI, read from ``trainer.datamodule`` when None.
    """

    nonfinite_loss_name: ClassVar[str] = "train/loss"  # how the guard names the loss training_step returns
    # Init arguments that are objects, not hyperparameters: left out of save_hyperparameters.
    not_hyperparameters: ClassVar[list[str]] = ["backbone", "optimizer", "lr_scheduler", "data_spec"]
    # The task's optimizer factories (attributes) and the model options that give them.
    optimizer_options: ClassVar[dict[str, str]] = {"optimizer": "optimizer"}

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        lr_scheduler_monitor: str = "val/loss",
        on_nonfinite: NonFinitePolicy = "raise",
        exclude_from_weight_decay: bool = True,
        torch_compile: bool = False,
        data_spec: DataSpec | None = None,
    ) -> None:
        super().__init__()
        if on_nonfinite not in ("raise", "skip"):
            raise ConfigError(f"model.on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        if not isinstance(backbone, Backbone):
            raise ConfigError(f"model.backbone must be a ptft.backbones.Backbone, got {type(backbone).__name__}")
        self.save_hyperparameters(ignore=self.not_hyperparameters)  # every __init__ up to the subclass
        self.backbone = backbone
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.lr_scheduler_monitor = lr_scheduler_monitor
        self.on_nonfinite = on_nonfinite
        self.exclude_from_weight_decay = exclude_from_weight_decay
        self.torch_compile = torch_compile
        self._data_spec = data_spec

    @property
    def data_spec(self) -> DataSpec | None:
        """The data's :class:`~ptft.data.spec.DataSpec`: the linked one, else the trainer's DataModule's."""
        if self._data_spec is not None:
            return self._data_spec
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(datamodule, "spec", None)

    def log(self, name: str, value: Any, *args: Any, on_step: bool | None = None, on_epoch: bool | None = None, **kwargs: Any) -> None:
        """Lightning's ``log``, skipped for a per-step training value on a step no logger writes (see the class docstring)."""
        if self._between_logged_steps(on_step, on_epoch):
            return
        super().log(name, value, *args, on_step=on_step, on_epoch=on_epoch, **kwargs)

    def _between_logged_steps(self, on_step: bool | None, on_epoch: bool | None) -> bool:
        trainer = self._trainer
        if trainer is None or not trainer.training or self._current_fx_name is None or trainer.fast_dev_run:
            return False
        on_step, on_epoch = _FxValidator.check_logging_and_get_default_levels(self._current_fx_name, on_step=on_step, on_epoch=on_epoch)
        if not on_step or on_epoch:
            return False
        epoch_loop = trainer.fit_loop.epoch_loop
        last_batch = epoch_loop.batch_progress.is_last_batch or 0 <= trainer.max_steps - trainer.global_step <= len(trainer.optimizers)
        return not (last_batch or trainer._logger_connector.should_update_logs)

    def handoff_modules(self) -> dict[str, nn.Module]:
        """The modules fine-tuning takes over, by name (``ptft export`` writes these)."""
        return {"backbone": self.backbone}

    def check_data(self, spec: DataSpec) -> None:
        """Raise a ConfigError if this task cannot use the data ``spec`` describes; the CLI calls
        it before a trainer writes anything, and ``setup`` again for runs started from Python."""
        self.backbone.check_data(spec)

    def check_schedule(self, run_steps: float) -> None:
        """Raise the ConfigError the LR scheduler would raise in :meth:`configure_optimizers` for a
        run of ``run_steps`` optimizer steps (a warmup as long as the run, a run without a set
        length). The CLI calls it before the data is prepared when the run's length is known without
        the data (``trainer.max_steps`` with no epoch limit). The scheduler is built on a throwaway
        optimizer: errors other than ConfigErrors (a scheduler that needs the real parameter groups)
        are left to :meth:`configure_optimizers`."""
        if self.lr_scheduler is None:
            return
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
        try:
            build_scheduler(self.lr_scheduler, optimizer, run_steps)
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001 - only ptft's ConfigErrors are reported this early
            pass

    def check_optimizers(self) -> None:
        """Raise a ConfigError naming the option when an optimizer refuses its arguments (torch checks
        ``lr``, ``betas``, ``eps``, ... when it is built); built on a throwaway parameter, so the CLI can
        call it before the data is prepared."""
        for attribute, option in self.optimizer_options.items():
            factory = getattr(self, attribute)
            try:
                factory([torch.zeros(1, requires_grad=True)])
            except ValueError as error:  # torch's refusal; other errors are left to configure_optimizers
                named = [k for k, v in getattr(factory, "keywords", {}).items() if re.search(rf"(?<![\w.-]){re.escape(str(v))}\b", str(error))]
                key = f"model.{option}" + (f".init_args.{named[0]}" if len(named) == 1 else "")
                raise ConfigError(f"{key}: the optimizer refuses it: {error}") from None

    def setup(self, stage: str) -> None:
        if self.data_spec is not None:
            self.check_data(self.data_spec)
        if self._trainer is not None:
            skip_unimplemented_batch_hooks(self.trainer.callbacks)

    def configure_callbacks(self) -> list[pl.Callback]:
        """The run machinery every ptft run gets (see the class docstring)."""
        return [NonFiniteGuard(self.on_nonfinite, self.nonfinite_loss_name), RNGStates(), LoaderPosition(), PreemptionCheckpoint(),
                FinalCheckpoint(), AtomicCheckpoints(), CheckpointMetadata()]

    def compile_regions(self) -> list[nn.Module]:
        """The modules ``torch_compile`` compiles (each through its ``__call__``): the backbone's
        :meth:`~ptft.backbones.Backbone.compile_regions`; tasks add their heads."""
        return self.backbone.compile_regions()

    def configure_model(self) -> None:
        if self.torch_compile and not getattr(self, "_compiled", False):
            for module in self.compile_regions():
                module.compile()
            self._compiled = True

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameter groups handed to the optimizer; tasks override this for per-part learning
        rates: a group's ``lr`` replaces the optimizer's, its ``lr_scale`` multiplies the result."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def weight_decay_groups(self, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``groups`` split into decayed and ``weight_decay: 0`` halves unless
        ``exclude_from_weight_decay`` is False."""
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
