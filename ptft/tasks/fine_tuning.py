"""What every fine-tuning objective shares: the pretrained hand-off, freezing, and per-depth
learning rates. An objective (classification, CTC, seq2seq) adds its head and loss in one file."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Literal

import torch
from pytorch_lightning.strategies import DDPStrategy

from ptft.backbones.base import Backbone
from ptft.data.spec import DataSpec
from ptft.data.tokenizer import TextTokenizer
from ptft.errors import ConfigError, PtftError
from ptft.handoff import Pretrained, load_module, read_pretrained
from ptft.quiet import expect_eval_mode_warning, forget_warning
from ptft.tasks.base import PtftTask


class FineTuningTask(PtftTask):
    """A backbone taken over from pretraining (a ``.ckpt``, an export folder, or random init),
    fine-tuned under a task head that a subclass adds. The backbone's weights load strictly (a
    mismatch lists the missing, unexpected and mis-shaped keys); a text model's tokenizer comes
    with it and must be the data's (the ``ptft`` CLI sets ``data.tokenizer`` to ``model.pretrained``).

    Args:
        backbone: the backbone to build. Optional with ``pretrained``, which then rebuilds the
            exported one; when both are given the weights must fit it exactly.
        pretrained: a ptft pretraining ``.ckpt`` or a ``ptft export`` folder; None trains from random init.
        backbone_overrides: init args of the backbone that fine-tuning changes, e.g.
            ``{drop_path: 0.1}``: only the backbone class's ``fine_tuning_options`` (dropout, drop
            path, pooling...), never its architecture, which comes from ``pretrained``. They apply
            to a random-init ``backbone`` too (its initial weights unchanged), so a random-init
            baseline gets the same settings.
        mode: ``full`` (train everything) or ``linear_probe`` (backbone frozen and kept in eval
            mode, so BatchNorm statistics do not drift; its features are computed without grad).
        unfreeze_at_epoch: with ``linear_probe``, train the whole network from this epoch on.
            Under DDP this needs ``--trainer.strategy=ddp_find_unused_parameters_true``.
        backbone_lr: learning rate of the backbone (None: the optimizer's lr, as for the head).
        layer_decay: layer-wise learning-rate decay (e.g. 0.75, the MAE recipe): the backbone's
            deepest group (ViT: final norm; ResNet: last stage) trains at the backbone's rate, each
            group closer to the input at ``layer_decay`` times the next one's (ViT: per block, ResNet:
            per stage, DCGAN encoder: per layer; see ``Backbone.layer_groups``). None: no decay.
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    def __init__(
        self,
        backbone: Backbone | None = None,
        pretrained: str | None = None,
        backbone_overrides: dict[str, Any] | None = None,
        mode: Literal["full", "linear_probe"] = "full",
        unfreeze_at_epoch: int | None = None,
        backbone_lr: float | None = None,
        layer_decay: float | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in ("full", "linear_probe"):
            raise ConfigError(f"model.mode must be 'full' or 'linear_probe', got {mode!r}")
        if unfreeze_at_epoch is not None and (mode != "linear_probe" or unfreeze_at_epoch < 1):
            raise ConfigError("model.unfreeze_at_epoch needs model.mode=linear_probe and a value >= 1")
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ConfigError(f"model.layer_decay must be in (0, 1], got {layer_decay}")
        handed_over: Pretrained | None = None
        if pretrained is not None:
            try:
                handed_over = read_pretrained(pretrained)
                backbone = self.take_over(handed_over, backbone)
            except PtftError as error:
                raise type(error)(f"model.pretrained: {error}") from None
        elif backbone is None:
            raise ConfigError("give model.backbone (random init) or model.pretrained (a .ckpt or export folder)")
        if backbone_overrides:
            backbone = backbone.with_fine_tuning_options(backbone_overrides)
        super().__init__(backbone, **kwargs)
        self.pretrained = handed_over  # what model.pretrained holds: specs, weights, tokenizer, labels
        tokenizer = handed_over.tokenizer if handed_over is not None else None
        self.pretrained_tokenizer = TextTokenizer.from_json(tokenizer, str(pretrained)) if tokenizer is not None else None
        self.mode = mode
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.backbone_lr = backbone_lr
        self.layer_decay = layer_decay
        self.frozen = mode == "linear_probe"
        if self.frozen:
            self.backbone.eval()  # Lightning keeps each submodule's mode as it finds it
            if unfreeze_at_epoch is None:
                self.backbone.requires_grad_(False)  # never trained: not in the optimizer, not in DDP's buckets

    def take_over(self, pretrained: Pretrained, backbone: Backbone | None) -> Backbone:
        """The backbone fine-tuning starts from: ``pretrained``'s, loaded strictly (into ``backbone``
        when one is configured). Called before ``nn.Module.__init__``: it may not set attributes.
        An objective whose backbone can start from another kind of pretrained model (a seq2seq model
        from an MLM encoder) overrides it."""
        return load_module(pretrained, "backbone", backbone)

    def check_data(self, spec: DataSpec) -> None:
        """The backbone must read the data's inputs, and a pretrained text model's tokenizer must be the data's."""
        if self.pretrained is not None and spec.input_kind == "text":
            source = self.pretrained.source
            if self.pretrained_tokenizer is None:
                raise ConfigError(f"model.pretrained {source} holds no tokenizer: it was not pretrained on text")
            if spec.tokenizer is not None and not spec.tokenizer.same_as(self.pretrained_tokenizer):
                raise ConfigError(
                    f"data.tokenizer is not the tokenizer {source} was trained with: token ids would mean other tokens; "
                    f"set data.tokenizer={source} (the ptft CLI does when data.tokenizer is not given)"
                )
        super().check_data(spec)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        strategy = self.trainer.strategy
        if self.unfreeze_at_epoch is not None and isinstance(strategy, DDPStrategy):
            if not strategy._ddp_kwargs.get("find_unused_parameters", False):
                raise ConfigError(
                    "model.unfreeze_at_epoch under DDP: the frozen backbone gets no gradients at first; "
                    "use --trainer.strategy=ddp_find_unused_parameters_true"
                )

    def on_fit_start(self) -> None:
        """A linear probe's backbone is in eval mode on purpose: Lightning's warning about modules in
        eval mode at the start of training is silenced when it counts exactly the backbone's modules
        (one more module in eval mode, and it shows), until training has started."""
        super().on_fit_start()
        in_eval = [name for name, module in self.named_modules() if not module.training]
        if self.frozen and in_eval and all(name == "backbone" or name.startswith("backbone.") for name in in_eval):
            self._eval_mode_filter = expect_eval_mode_warning(len(in_eval))

    def on_train_start(self) -> None:
        super().on_train_start()
        forget_warning(getattr(self, "_eval_mode_filter", None))
        self._eval_mode_filter = None

    def teardown(self, stage: str) -> None:  # a fit that failed before training started
        super().teardown(stage)
        forget_warning(getattr(self, "_eval_mode_filter", None))
        self._eval_mode_filter = None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def on_train_epoch_start(self) -> None:
        if self.frozen and self.unfreeze_at_epoch is not None and self.current_epoch >= self.unfreeze_at_epoch:
            self.frozen = False
        self.backbone.train(not self.frozen)

    def backbone_context(self):
        """Context for running the backbone: without grad while it is frozen."""
        return torch.no_grad() if self.frozen else nullcontext()

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The head (everything but the backbone) at the optimizer's lr; the backbone at
        ``backbone_lr``, one group per depth with ``layer_decay``."""
        head = [p for name, p in self.named_parameters() if not name.startswith("backbone.") and p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": head, "name": "head"}]
        if self.mode == "linear_probe" and self.unfreeze_at_epoch is None:
            return groups
        parameters = dict(self.backbone.named_parameters())
        layers = self.backbone.layer_groups() if self.layer_decay is not None else [list(parameters)]
        for depth, names in enumerate(layers):
            group: dict[str, Any] = {"params": [parameters[n] for n in names], "name": f"backbone.{depth}" if len(layers) > 1 else "backbone"}
            if self.backbone_lr is not None:
                group["lr"] = self.backbone_lr
            if self.layer_decay is not None:
                group["lr_scale"] = self.layer_decay ** (len(layers) - 1 - depth)
            groups.append(group)
        return groups
