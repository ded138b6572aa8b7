"""What every fine-tuning objective shares: the pretrained hand-off, freezing, and per-depth
learning rates. An objective (classification, CTC, seq2seq) adds its head and loss in one file."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
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
        reinit_top_groups: the last N of the pretrained backbone's layer groups (those of
            ``layer_decay``: a Transformer's final norm and blocks, a Conformer's blocks) start
            from random init, the rest from the pretrained weights: the top layers of a pretrained
            model fit its pretext task, and re-initialising them can help fine-tuning on little data
            (Zhang et al. 2021, "Revisiting Few-sample BERT Fine-tuning"). 0: none. A random-init
            backbone is left as it is (no extra random draws), so a baseline can share the setting.
        mode: ``full`` (train everything) or ``linear_probe`` (backbone frozen and kept in eval
            mode, so BatchNorm statistics do not drift; its features are computed without grad).
        unfreeze_at_epoch: with ``linear_probe``, train the whole network from this epoch on.
            Under DDP this needs ``--trainer.strategy=ddp_find_unused_parameters_true``.
        backbone_lr: learning rate of the backbone (None: the optimizer's lr, as for the head).
        layer_decay: layer-wise learning-rate decay (e.g. 0.75, the MAE recipe): the backbone's
            deepest group (ViT: final norm; ResNet: last stage) trains at the backbone's rate, each
            group closer to the input at ``layer_decay`` times the next one's (ViT: per block, ResNet:
            per stage, DCGAN encoder: per layer; see ``Backbone.layer_groups``). None: no decay.
        probe_layers: multi-layer features instead of the pooled ones (the DCGAN paper's probe of its
            discriminator): the map of each of these stages of a spatial backbone
            (``SpatialBackbone.stage_features``: ResNet stem + layer1-4, DCGAN encoder blocks, ViT
            blocks; 0 is the stage nearest the input, negative indices count from the end) is
            max-pooled to ``probe_grid`` x ``probe_grid``, flattened, and the stages concatenated:
            ``sum(channels_i * probe_grid**2)`` features (from the backbone's ``stage_channels()``).
            Classification's ``feature_norm`` standardises them. None: the pooled features. Works in
            both modes; in ``full`` mode under DDP, leaving out the last stage leaves parameters
            without gradients (use ``--trainer.strategy=ddp_find_unused_parameters_true``).
        probe_grid: side of the max-pooled grid of each probed stage (a smaller map is repeated up to it).
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    def __init__(
        self,
        backbone: Backbone | None = None,
        pretrained: str | None = None,
        backbone_overrides: dict[str, Any] | None = None,
        reinit_top_groups: int = 0,
        mode: Literal["full", "linear_probe"] = "full",
        unfreeze_at_epoch: int | None = None,
        backbone_lr: float | None = None,
        layer_decay: float | None = None,
        probe_layers: list[int] | None = None,
        probe_grid: int = 4,
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
        if reinit_top_groups < 0:
            raise ConfigError(f"model.reinit_top_groups must be >= 0, got {reinit_top_groups}")
        if reinit_top_groups and mode == "linear_probe" and unfreeze_at_epoch is None:
            raise ConfigError("model.reinit_top_groups with model.mode=linear_probe would freeze random layers under the head: "
                              "use model.mode=full, or set model.unfreeze_at_epoch")
        if reinit_top_groups and handed_over is not None:
            backbone = backbone.with_fresh_top_groups(reinit_top_groups)
        probe_stages = check_probe_layers(backbone, probe_layers, probe_grid)
        super().__init__(backbone, **kwargs)
        self.probe_layers = probe_stages
        self.probe_grid = probe_grid
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

    @property
    def feature_dim(self) -> int:
        """Size of :meth:`features`: the backbone's ``out_dim``, or the multi-layer probe's size."""
        if self.probe_layers is None:
            return self.backbone.out_dim
        channels = self.backbone.stage_channels()
        return sum(channels[i] * self.probe_grid**2 for i in self.probe_layers)

    def features(self, inputs: Any) -> torch.Tensor:
        """What the head reads: the pooled backbone features, or with ``probe_layers`` the
        max-pooled stage maps, concatenated; without grad while the backbone is frozen."""
        with self.backbone_context():
            if self.probe_layers is None:
                return self.backbone(inputs)
            maps = self.backbone.stage_features(inputs, depth=max(self.probe_layers) + 1)  # no stage beyond the deepest probed one
            return torch.cat([F.adaptive_max_pool2d(maps[i], self.probe_grid).flatten(1) for i in self.probe_layers], dim=1)

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


def check_probe_layers(backbone: Backbone, probe_layers: list[int] | None, probe_grid: int) -> list[int] | None:
    """``probe_layers`` as stage indices from 0 (None stays None); a ConfigError naming
    ``model.probe_layers`` when the backbone has no stages or an index is out of range."""
    if probe_layers is None:
        return None
    if probe_grid < 1:
        raise ConfigError(f"model.probe_grid must be >= 1, got {probe_grid}")
    stage_channels = getattr(backbone, "stage_channels", None)
    stages = len(stage_channels()) if stage_channels is not None else 0
    if not stages:
        raise ConfigError(f"model.probe_layers: the backbone {type(backbone).__name__} has no stages to probe; "
                          "use a spatial backbone (ResNet, DCGANEncoder, ViT) or drop model.probe_layers")
    if not probe_layers:
        raise ConfigError(f"model.probe_layers is empty; give stage indices of {type(backbone).__name__}'s {stages} stages (0..{stages - 1})")
    bad = [i for i in probe_layers if not -stages <= i < stages]
    if bad:
        raise ConfigError(f"model.probe_layers: stage {bad[0]} is out of range: {type(backbone).__name__} has {stages} stages "
                          f"(0..{stages - 1}, or -{stages}..-1 from the end)")
    indices = [i % stages for i in probe_layers]
    if len(set(indices)) != len(indices):
        raise ConfigError(f"model.probe_layers names a stage twice: {probe_layers}")
    return indices
