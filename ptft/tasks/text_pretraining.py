"""What the text pretraining objectives share (masked LM, causal LM, denoising seq2seq): the
tokenizer from the data, per-micro-batch randomness that a resume draws again, and perplexity."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import MeanMetric

from ptft.backbones.base import Backbone
from ptft.data.spec import DataSpec
from ptft.data.tokenizer import TextTokenizer
from ptft.errors import ConfigError
from ptft.tasks.base import PtftTask


class Perplexity(MeanMetric):
    """exp of the token-weighted mean loss over an epoch (and every rank)."""

    def compute(self) -> torch.Tensor:
        return super().compute().exp()


class TextPretraining(PtftTask):
    """A text objective on token blocks from a text DataModule (``WikiTextDataModule``), whose
    tokenizer is saved in every checkpoint. A subclass checks its backbone (``backbone_type``) and
    defines :meth:`loss`; validation logs ``val/<metric_name>`` (exp of the token-weighted mean
    loss), ``val/loss`` and the loss's extra metrics."""

    backbone_type: ClassVar[type[Backbone]] = Backbone
    metric_name: ClassVar[str] = "ppl"
    generator_device: ClassVar[str | None] = None  # where the per-step generators live (None: the model's device)

    def __init__(self, backbone: Backbone, **kwargs: Any) -> None:
        if not isinstance(backbone, self.backbone_type):
            raise ConfigError(f"model.backbone of {type(self).__name__} must be a ptft.backbones.{self.backbone_type.__name__}, "
                              f"got {type(backbone).__name__}")
        super().__init__(backbone, **kwargs)
        self.perplexity = nn.ModuleDict({stage: Perplexity() for stage in ("val", "test")})
        self._seed = 0
        self.tokenizer: TextTokenizer | None = None

    def check_data(self, spec: DataSpec) -> None:
        if spec.input_kind != "text":
            raise ConfigError(f"{type(self).__name__} needs text data with a tokenizer (ptft.data.WikiTextDataModule), got {spec.input_kind} data")
        super().check_data(spec)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.data_spec is None:
            raise ConfigError(f"{type(self).__name__} needs a text DataModule with a tokenizer (ptft.data.WikiTextDataModule)")
        self.tokenizer = self.data_spec.tokenizer
        self._seed = torch.initial_seed()  # set by seed_everything; the base of every step's randomness

    def micro_batch(self, batch_idx: int) -> int:
        """A counter of training micro-batches, distinct for every batch of the run: the optimizer
        step times ``accumulate_grad_batches`` plus the batch's place in its accumulation window
        (Lightning's windows start at a multiple of ``accumulate_grad_batches`` within each epoch and
        end at the epoch's last batch). It is ``global_step`` without accumulation, and derives from
        loop state a resume restores, so a resumed run counts the same."""
        accumulate = self.trainer.accumulate_grad_batches
        return self.global_step * accumulate + batch_idx % accumulate

    def seeded_generator(self, seed: int) -> torch.Generator:
        """A generator on ``generator_device`` (or the model's device) seeded with ``seed``."""
        return torch.Generator(self.generator_device or self.device).manual_seed(seed % 2**63)

    def step_generator(self, step: int, stream: int) -> torch.Generator:
        """Randomness of one micro-batch (``step``: :meth:`micro_batch`): a function of the seed,
        the rank and the step, so ranks differ (seed_everything gives them the same global stream),
        micro-batches of one accumulated optimizer step differ, and a resumed run draws the same."""
        return self.seeded_generator(((self._seed * 1_000_003 + self.global_rank) * 1_000_003 + step) * 2 + stream)

    def loss(self, tokens: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean loss over the predicted tokens and extra per-batch metrics (``count``: the tokens
        scored) of a batch of examples ``(B, block_size + 1)`` from :class:`~ptft.data.wikitext.TokenBlocks`."""
        raise NotImplementedError

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss, _ = self.loss(batch, self.step_generator(self.micro_batch(batch_idx), 0))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def _evaluate(self, batch: torch.Tensor, batch_idx: int, stage: str) -> None:
        loss, extra = self.loss(batch, self.seeded_generator(batch_idx))  # the same corruption every epoch
        self.perplexity[stage].update(loss.float(), extra.pop("count"))
        self.log(f"{stage}/{self.metric_name}", self.perplexity[stage], prog_bar=True)
        self.log(f"{stage}/loss", loss, sync_dist=True)
        for name, value in extra.items():
            self.log(f"{stage}/{name}", value, sync_dist=True)
