"""Sequence-to-sequence fine-tuning (translation, summarisation) of a ``Seq2SeqTransformer``."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torchmetrics import Metric
from torchmetrics.text import CHRFScore, SacreBLEUScore
from torchmetrics.text.rouge import ROUGEScore

from ptft.backbones.base import Backbone, SequenceFeatures
from ptft.backbones.seq2seq import Seq2SeqTransformer
from ptft.bert2bert import is_text_encoder, seq2seq_from_text_encoder
from ptft.data.seq2seq_batch import Seq2SeqBatch
from ptft.data.spec import DataSpec
from ptft.data.tokenizer import TextTokenizer
from ptft.errors import ConfigError
from ptft.handoff import Pretrained
from ptft.pretext.collapse import state_spread
from ptft.seq2seq_generation import GenerationSettings, generate, output_text
from ptft.tasks.fine_tuning import FineTuningTask

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


def text_metrics(kind: str) -> dict[str, Metric]:
    """The generation metrics of a task kind, by the name they are logged under (``val/<name>``):
    SacreBLEU (13a tokenisation) and chrF for ``translation``; for ``summarization``, ROUGE-1/2/L
    F-measures, the best over an example's references (``rouge``) and against its target alone
    (``rouge_target``, the single-reference protocol; see :func:`metric_references`)."""
    if kind == "translation":
        return {"bleu": SacreBLEUScore(tokenize="13a"), "chrf": CHRFScore()}
    if kind == "summarization":
        return {"rouge": ROUGEScore(rouge_keys=ROUGE_KEYS, accumulate="best"), "rouge_target": ROUGEScore(rouge_keys=ROUGE_KEYS)}
    raise ConfigError(f"model.metrics must be 'translation' or 'summarization', got {kind!r}")


def metric_references(name: str, references: list[list[str]]) -> list[list[str]]:
    """The references a :func:`text_metrics` metric scores each output against: every one, or
    only the target (the first) for a ``*_target`` metric."""
    return [texts[:1] for texts in references] if name.endswith("_target") else references


def scores(name: str, value: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A :func:`text_metrics` metric's computed ``value`` as ``{logged name: score on a 0-100
    scale}``: ``{name: value}``, or ROUGE's F-measures by key (``rouge1``, ... for ``rouge``;
    ``rouge1_target``, ... for ``rouge_target``)."""
    if isinstance(value, dict):
        return {key + name.removeprefix("rouge"): 100 * value[f"{key}_fmeasure"].float() for key in ROUGE_KEYS}
    return {name: 100 * value.float()}


class Seq2SeqFineTuning(FineTuningTask):
    """A ``Seq2SeqTransformer`` trained on source/target pairs (``Seq2SeqDataModule``) with
    teacher-forced cross-entropy (label smoothing; padding ignored), from random init, a BART
    pretraining (``DenoisingSeq2SeqPretraining`` checkpoint or export) or an MLM encoder
    (BERT2BERT: a ``TextTransformer`` checkpoint or export; the encoder and the decoder's
    self-attention, MLPs, norms and positions copy it, cross-attention starts fresh, and the key
    report is printed). Validation logs ``val/loss`` and ``val/ppl`` (teacher-forced, without label
    smoothing) and, over text generated for the first ``generate_val_batches`` batches and scored
    against every reference of each example, ``val/bleu`` and ``val/chrf`` (translation) or
    ``val/rouge1``, ``val/rouge2`` and ``val/rougeL`` (summarisation), on a 0-100 scale and over
    the whole split under DDP (the metric states are gathered). When the data has extra references
    (``reference_columns``), summarisation also logs ``val/rouge1_target``, ``val/rouge2_target``
    and ``val/rougeL_target``: the same F-measures against each example's target alone, the
    protocol of single-reference results (e.g. AESLC's original subject lines). Testing scores
    every batch.

    Two validation signals say whether the model reads its source at all: ``val/encoder_spread``
    (:func:`~ptft.pretext.collapse.state_spread` of the encoder's states at real tokens: about 0.9
    at random init, near 0 when the encoder gives every token of every source the same state) and
    ``val/source_gap`` (the loss with each target read against another example's source, minus the
    loss against its own: 0 when the decoder ignores the source). From random init on AESLC both
    fall to about 0 within 100 steps without copy attention (benchmarks/encoder_collapse.py): a
    model that writes one output for every input; with copy attention the gap stays near 0.9 nats.

    Args:
        metrics: ``translation`` or ``summarization``.
        label_smoothing: label smoothing of the training cross-entropy.
        beam_size: hypotheses kept when generating (1: greedy).
        length_penalty: a finished hypothesis scores ``sum log p / length ** length_penalty``.
        max_generate_length: longest generated output in tokens (None: the data's
            ``max_target_length`` - 1, the longest target the data holds after its start token).
        no_repeat_ngram_size: no n-gram of this size appears twice in an output (0: no constraint).
        generate_val_batches: validation batches whose text is generated and scored (None: all;
            0: none, and no generation metrics); keeps epochs cheap.
        **kwargs: the hand-off (backbone, pretrained, backbone_overrides, backbone_lr, layer_decay:
            see :class:`~ptft.tasks.fine_tuning.FineTuningTask`) and the options every task shares
            (optimizer, lr_scheduler, on_nonfinite, ...: see :class:`~ptft.tasks.base.PtftTask`).
    """

    def __init__(
        self,
        metrics: Literal["translation", "summarization"] = "translation",
        label_smoothing: float = 0.1,
        beam_size: int = 4,
        length_penalty: float = 1.0,
        max_generate_length: int | None = None,
        no_repeat_ngram_size: int = 0,
        generate_val_batches: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        if generate_val_batches is not None and generate_val_batches < 0:
            raise ConfigError(f"model.generate_val_batches must be >= 0 or null (all), got {generate_val_batches}")
        if kwargs.get("mode", "full") != "full":
            raise ConfigError("model.mode must be 'full' for Seq2SeqFineTuning: the decoder is part of the backbone, so a linear probe trains nothing")
        GenerationSettings(max_generate_length or 1, beam_size, length_penalty, no_repeat_ngram_size)  # refuses bad values now
        metric_objects = text_metrics(metrics)
        super().__init__(**kwargs)
        if not isinstance(self.backbone, Seq2SeqTransformer):
            raise ConfigError(f"model.backbone of Seq2SeqFineTuning must be a ptft.backbones.Seq2SeqTransformer, got {type(self.backbone).__name__}")
        if max_generate_length is not None and max_generate_length > self.backbone.max_target_length:
            raise ConfigError(f"model.max_generate_length {max_generate_length} is longer than the backbone's max_target_length "
                              f"{self.backbone.max_target_length}")
        self.label_smoothing = label_smoothing
        self.beam_size, self.length_penalty = beam_size, length_penalty
        self.max_generate_length, self.no_repeat_ngram_size = max_generate_length, no_repeat_ngram_size
        self.generate_val_batches = generate_val_batches
        self.eval_metrics = nn.ModuleDict({stage: nn.ModuleDict({k: m.clone() for k, m in metric_objects.items()}) for stage in ("val", "test")})
        self.tokenizer: TextTokenizer | None = self.pretrained_tokenizer

    def take_over(self, pretrained: Pretrained, backbone: Backbone | None) -> Backbone:
        """A seq2seq model's backbone, or a BERT2BERT warm start from a text encoder (the key report is printed)."""
        if not is_text_encoder(pretrained):
            return super().take_over(pretrained, backbone)
        if backbone is not None and not isinstance(backbone, Seq2SeqTransformer):
            raise ConfigError(f"model.backbone must be a Seq2SeqTransformer to start from {pretrained.source}'s text encoder (BERT2BERT)")
        model, report = seq2seq_from_text_encoder(pretrained, backbone)
        rank_zero_info(str(report))
        return model

    def check_data(self, spec: DataSpec) -> None:
        super().check_data(spec)
        if spec.max_target_length is None:
            raise ConfigError("Seq2SeqFineTuning needs source/target pairs (ptft.data.Seq2SeqDataModule)")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.data_spec is not None and self.data_spec.tokenizer is not None:
            self.tokenizer = self.data_spec.tokenizer

    def generation_settings(self) -> GenerationSettings:
        """Generation as configured; the default length: the data's ``max_target_length`` - 1 (or the backbone's)."""
        spec = self.data_spec
        default = spec.max_target_length - 1 if spec is not None and spec.max_target_length else self.backbone.max_target_length
        length = min(self.max_generate_length or default, self.backbone.max_target_length)
        return GenerationSettings(length, self.beam_size, self.length_penalty, self.no_repeat_ngram_size)

    def loss(self, batch: Seq2SeqBatch, label_smoothing: float, memory: SequenceFeatures | None = None,
             source: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced cross-entropy of the targets' tokens after their start token, padding ignored,
        reading ``source`` (default: the batch's sources) through ``memory`` (default: its encoder states)."""
        source = batch.source if source is None else source
        memory = self.backbone.encode(source) if memory is None else memory
        logits = self.backbone.output_logits(self.backbone.decode(batch.target[:, :-1], memory), memory, source)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch.target[:, 1:].flatten(), ignore_index=self.backbone.pad_id,
                               label_smoothing=label_smoothing)

    def training_step(self, batch: Seq2SeqBatch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch, self.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.source))
        return loss

    def generate_texts(self, source: torch.Tensor, settings: GenerationSettings | None = None,
                       generator: torch.Generator | None = None) -> list[str]:
        """The output text generated for each right-padded source ``(B, S)`` (ids of ``<cls> text <sep>``)."""
        tok = self.tokenizer
        outputs = generate(self.backbone, source, tok.cls_id, tok.sep_id, settings or self.generation_settings(), generator)
        return [output_text(tok, ids) for ids in outputs]

    def validation_step(self, batch: Seq2SeqBatch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Seq2SeqBatch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: Seq2SeqBatch, batch_idx: int) -> list[str]:
        return self.generate_texts(batch.source)

    def _evaluate(self, batch: Seq2SeqBatch, batch_idx: int, stage: str) -> None:
        memory = self.backbone.encode(batch.source)
        loss = self.loss(batch, 0.0, memory)
        size = len(batch.source)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, batch_size=size)
        self.log(f"{stage}/ppl", loss.exp(), sync_dist=True, batch_size=size)
        if stage == "val" and size > 1:  # does the model read its source? (see the class docstring)
            states = memory.states if memory.mask is None else memory.states[memory.mask]
            self.log("val/encoder_spread", state_spread(states), sync_dist=True, batch_size=size)
            self.log("val/source_gap", self.loss(batch, 0.0, source=batch.source.roll(1, 0)) - loss,
                     sync_dist=True, batch_size=size)
        if stage == "val" and self.generate_val_batches is not None and batch_idx >= self.generate_val_batches:
            return
        predictions = self.generate_texts(batch.source)
        for name, metric in self.eval_metrics[stage].items():
            if name.endswith("_target") and not (self.data_spec is not None and self.data_spec.extra_references):
                continue  # the target is the only reference: the same scores as the best over the references
            metric.update(predictions, metric_references(name, batch.references))

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _log_metrics(self, stage: str) -> None:
        """Generation metrics over the epoch (every rank's states gathered), 0-100, then reset."""
        for name, metric in self.eval_metrics[stage].items():
            if not metric.update_called:
                continue
            for key, score in scores(name, metric.compute()).items():
                self.log(f"{stage}/{key}", score, prog_bar=key in ("bleu", "rougeL"), sync_dist=True)  # the same on every rank
            metric.reset()
