"""CTC fine-tuning: speech recognition on any speech backbone, pretrained or random."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torchmetrics.text import CharErrorRate, WordErrorRate

from ptft.ctc_decoding import BeamSearchDecoder, greedy_decode, transcript
from ptft.data.spec import DataSpec
from ptft.data.speech_batch import SpeechBatch
from ptft.data.tokenizer import TextTokenizer
from ptft.errors import ConfigError
from ptft.heads import CTCHead
from ptft.tasks.fine_tuning import FineTuningTask


def ctc_feasible(output_lengths: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """``(B,)`` True where a CTC alignment exists: the utterance has at least as many output frames
    as its transcript has labels plus repeated neighbours (each repeat needs a blank between)."""
    positions = torch.arange(targets.shape[1], device=targets.device)[None]
    repeats = ((targets[:, 1:] == targets[:, :-1]) & (positions[:, 1:] < target_lengths[:, None])).sum(1)
    return output_lengths >= target_lengths + repeats


class CTCFineTuning(FineTuningTask):
    """Speech recognition: a :class:`~ptft.heads.CTCHead` over the data's character vocabulary
    (``data_spec.tokenizer``; its padding id is the blank) on a speech backbone's states, trained
    with the CTC loss. Utterances whose transcript cannot be aligned to their output frames are
    left out of the loss and counted (``train/ctc_skipped``), never scored as an infinite loss.
    Logs ``val/loss``, ``val/cer`` and ``val/wer`` (torchmetrics; also ``test/``). The hand-off
    (``pretrained``, ``mode``, ``unfreeze_at_epoch``, ``backbone_lr``, ``layer_decay``,
    ``reinit_top_groups``) is
    :class:`~ptft.tasks.fine_tuning.FineTuningTask`'s. The export holds the backbone and the head
    (``ctc_head``), which is what ``ptft transcribe`` reads.

    Args:
        head_dropout: dropout on the states before the head.
        decoder: ``greedy`` (best path) or ``beam`` (prefix beam search without a language model,
            torchaudio's ``ctc_decoder``; needs ``pip install 'ptft[beam]'``) for validation and test.
        beam_size: hypotheses kept by the beam search.
        **kwargs: the hand-off (backbone, pretrained, mode, ...: see :class:`FineTuningTask`) and the
            options every task shares (optimizer, lr_scheduler, ...: see :class:`~ptft.tasks.base.PtftTask`).
    """

    def __init__(self, head_dropout: float = 0.0, decoder: Literal["greedy", "beam"] = "greedy", beam_size: int = 20,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.backbone.input_kind != "audio":
            raise ConfigError(f"CTC fine-tuning needs a speech backbone (ptft.backbones.Conformer or DeepSpeech2), got {type(self.backbone).__name__}")
        if decoder not in ("greedy", "beam"):
            raise ConfigError(f"model.decoder must be 'greedy' or 'beam', got {decoder!r}")
        spec = self.data_spec
        vocabulary = spec.tokenizer if spec is not None and spec.tokenizer is not None else self.pretrained_tokenizer
        if vocabulary is None:
            raise ConfigError("CTC fine-tuning needs the character vocabulary of labelled speech data: "
                              "use a SpeechDataModule with data.labelled=true (or model.pretrained from a CTC model)")
        self.vocabulary: TextTokenizer = vocabulary
        self.blank = vocabulary.pad_id
        self.ctc_head = CTCHead(self.backbone.out_dim, vocabulary.vocab_size, head_dropout)
        self.beam_search = BeamSearchDecoder(self.tokens(), self.blank, beam_size) if decoder == "beam" else None
        self.eval_metrics = nn.ModuleDict({
            stage: nn.ModuleDict({"cer": CharErrorRate(), "wer": WordErrorRate()}) for stage in ("val", "test")
        })
        self.register_buffer("skipped", torch.zeros((), dtype=torch.long), persistent=False)  # on the device: no sync per step
        self.warned = False

    def tokens(self) -> list[str]:
        return [self.vocabulary.tokenizer.id_to_token(i) for i in range(self.vocabulary.vocab_size)]

    def handoff_modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "ctc_head": self.ctc_head}

    def check_data(self, spec: DataSpec) -> None:
        super().check_data(spec)
        if spec.tokenizer is not None and not spec.tokenizer.same_as(self.vocabulary):
            raise ConfigError("the data's character vocabulary is not the one model.ctc_head was built for; "
                              "set data.tokenizer to the checkpoint the model was trained from")

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.ctc_head]

    def forward(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``(B, T', V)`` and output lengths ``(B,)`` of a batch of features."""
        with self.backbone_context():
            encoded = self.backbone.forward_features(batch.inputs)
        return self.ctc_head(encoded.states), self.backbone.output_lengths(batch.input_lengths)

    def ctc_loss(self, log_probs: torch.Tensor, lengths: torch.Tensor, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean CTC loss per target label (``reduction="mean"``'s scale) over the alignable utterances,
        and how many were left out, without a host sync: an utterance without an alignment has an
        infinite loss, which ``zero_infinity`` zeroes with its gradient, and is left out of the mean.
        A batch without an alignable utterance scores a 0 that still reaches every parameter."""
        feasible = ctc_feasible(lengths, batch.targets, batch.target_lengths)
        losses = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, lengths, batch.target_lengths, blank=self.blank,
                            reduction="none", zero_infinity=True)
        per_label = losses / batch.target_lengths.clamp(min=1)
        loss = (per_label * feasible).sum() / feasible.sum().clamp(min=1)
        return loss, (~feasible).sum()

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        log_probs, lengths = self(batch)
        loss, skipped = self.ctc_loss(log_probs, lengths, batch)
        self.skipped += skipped
        self.log("train/loss", loss, prog_bar=True, batch_size=len(lengths))
        self.log("train/ctc_skipped", self.skipped.float(), reduce_fx="max")
        return loss

    def on_train_epoch_end(self) -> None:
        if self.skipped > 0 and not self.warned:
            self.warned = True
            rank_zero_warn(f"{int(self.skipped)} training utterances so far have more CTC labels than output frames; "
                           "they are left out of the loss (train/ctc_skipped counts them)")

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Transcripts of a batch of log-probabilities (greedy, or beam search with ``decoder: beam``)."""
        ids = self.beam_search(log_probs, lengths) if self.beam_search is not None else greedy_decode(log_probs, lengths, self.blank)
        return [transcript(self.vocabulary, hypothesis) for hypothesis in ids]

    def _evaluate(self, batch: SpeechBatch, stage: str) -> None:
        log_probs, lengths = self(batch)
        loss, _ = self.ctc_loss(log_probs, lengths, batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(lengths))
        hypotheses = self.decode(log_probs, lengths)
        references = [self.vocabulary.decode(t[:n]) for t, n in zip(batch.targets.tolist(), batch.target_lengths.tolist())]
        for name, metric in self.eval_metrics[stage].items():
            metric.update(hypotheses, references)
            self.log(f"{stage}/{name}", metric, prog_bar=True, batch_size=len(lengths))
