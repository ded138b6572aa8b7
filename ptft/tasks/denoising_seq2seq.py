"""The denoising text autoencoder (BART): reconstruct text from a corrupted copy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ptft.backbones.base import Backbone
from ptft.backbones.seq2seq import Seq2SeqTransformer
from ptft.data.spec import DataSpec
from ptft.errors import ConfigError
from ptft.pretext.text_infilling import corrupt_text, sentence_end_table
from ptft.tasks.text_pretraining import TextPretraining


class DenoisingSeq2SeqPretraining(TextPretraining):
    """BART's recipe on a ``Seq2SeqTransformer``: each example's first ``block_size - 2`` tokens,
    between ``<cls>`` and ``<sep>`` (the way ``Seq2SeqDataModule`` wraps texts for fine-tuning), are
    corrupted by sentence permutation and span infilling (``mask_rate`` of the tokens hidden in spans
    of Poisson(``poisson_lambda``) length, each span one ``<mask>``); the encoder reads the corrupted
    sequence and the decoder, teacher-forced, reconstructs the original. The loss is the mean
    cross-entropy over the ``block_size - 1`` reconstructed tokens; validation logs ``val/recon_ppl``
    (exp of it) and ``val/loss``. A sentence ends at an end-of-text token (a line end) and at a token
    ending with ``.``, ``!`` or ``?``. The corruption runs on the CPU, one example at a time, from
    per-micro-batch generators (a resumed run corrupts the same way). Data: ``WikiTextDataModule``.

    Args:
        backbone: a ``Seq2SeqTransformer`` with ``max_source_length >= block_size`` and
            ``max_target_length >= block_size - 1``.
        mask_rate: fraction of the tokens hidden by span infilling (BART: 0.3).
        poisson_lambda: mean span length (BART: 3); spans of length 0 insert a ``<mask>``.
        permute_sentences: shuffle the sentences of each example before infilling.
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`~ptft.tasks.base.PtftTask`.
    """

    backbone_type = Seq2SeqTransformer
    metric_name = "recon_ppl"
    generator_device = "cpu"

    def __init__(
        self,
        backbone: Backbone,
        mask_rate: float = 0.3,
        poisson_lambda: float = 3.0,
        permute_sentences: bool = True,
        **kwargs: Any,
    ) -> None:
        if not 0 <= mask_rate < 1:
            raise ConfigError(f"model.mask_rate must be in [0, 1), got {mask_rate}")
        if poisson_lambda <= 0:
            raise ConfigError(f"model.poisson_lambda must be > 0, got {poisson_lambda}")
        super().__init__(backbone, **kwargs)
        self.mask_rate, self.poisson_lambda, self.permute_sentences = mask_rate, poisson_lambda, permute_sentences
        self._sentence_ends: tuple[str, torch.Tensor] | None = None

    def check_data(self, spec: DataSpec) -> None:
        super().check_data(spec)
        block = spec.max_length
        if block is not None and (block < 3 or block > self.backbone.encoder.max_length or block - 1 > self.backbone.max_target_length):
            raise ConfigError(f"data.block_size must be >= 3, <= the backbone's max_source_length ({self.backbone.encoder.max_length}) and at most "
                              f"its max_target_length + 1 ({self.backbone.max_target_length + 1}), got {block}")

    def sentence_ends(self) -> torch.Tensor | None:
        """The tokenizer's :func:`~ptft.pretext.text_infilling.sentence_end_table` (None without
        sentence permutation), built once per tokenizer."""
        if not self.permute_sentences:
            return None
        if self._sentence_ends is None or self._sentence_ends[0] != self.tokenizer.digest:
            self._sentence_ends = self.tokenizer.digest, sentence_end_table(self.tokenizer)
        return self._sentence_ends[1]

    def corrupted_sources(self, texts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``<cls> corrupted text <sep>`` of each row of ``texts`` ``(B, L)``, right-padded, on
        ``texts``' device; at most ``max_source_length`` tokens (only a short row with more inserted
        masks than hidden tokens could be longer: its end is cut)."""
        tok, limit = self.tokenizer, self.backbone.encoder.max_length
        ends = self.sentence_ends()
        rows = [corrupt_text(row, ends, tok.mask_id, self.mask_rate, self.poisson_lambda, generator)[: limit - 2] for row in texts.cpu()]
        source = torch.full((len(rows), max(len(r) for r in rows) + 2), tok.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            source[i, : len(row) + 2] = torch.cat([torch.tensor([tok.cls_id]), row, torch.tensor([tok.sep_id])])
        return source.to(texts.device)

    def loss(self, tokens: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        texts = tokens[:, :-3]  # block_size - 2 tokens of each example (its first block_size + 1 hold the next one's first)
        cls, sep = (torch.full_like(tokens[:, :1], i) for i in (self.tokenizer.cls_id, self.tokenizer.sep_id))
        original = torch.cat([cls, texts, sep], dim=1)
        logits = self.backbone.teacher_forced_logits(self.corrupted_sources(texts, generator), original[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), original[:, 1:].flatten())
        return loss, {"count": torch.tensor(original[:, 1:].numel(), device=tokens.device)}
