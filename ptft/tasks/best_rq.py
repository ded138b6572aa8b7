"""BEST-RQ pretraining (Chiu et al. 2022): predict a frozen random quantizer's codes of masked frames."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ptft.backbones.base import Backbone
from ptft.data.speech_batch import SpeechBatch
from ptft.errors import ConfigError
from ptft.pretext.code_perplexity import CodePerplexity
from ptft.pretext.frame_masking import stack_frames
from ptft.pretext.random_projection_quantizer import RandomProjectionQuantizer
from ptft.tasks.masked_speech import MaskedSpeechPretraining


class BestRQPretraining(MaskedSpeechPretraining):
    """Each output frame's stacked clean input frames get a code from a
    :class:`~ptft.pretext.random_projection_quantizer.RandomProjectionQuantizer` (frozen, random);
    the backbone sees the masked input and a linear head predicts the codes of the masked frames,
    scored by cross-entropy; ``train/acc`` and ``val/acc`` are the share of codes predicted right.
    ``val/code_perplexity`` is the perplexity of the codes over the real validation frames: how many
    codes the targets effectively use (see :class:`~ptft.pretext.code_perplexity.CodePerplexity`).

    Args:
        backbone: a speech backbone.
        codebook_size: number of codes (classes of the prediction).
        codebook_dim: dimension of the random projection the codes live in.
        quantizer_seed: seed of the projection and the codebook.
        center_frames: subtract each input frame's mean over its mel bands before the projection,
            so that the codes follow the spectral shape rather than the loudness (not in the paper,
            which quantizes the frames as they are). The loudness is most of the variance of
            normalised log-mel frames, and without centring few codes take most frames: watch
            ``val/code_perplexity``.
        **kwargs: masking (mask_probability, mask_span, mask_noise_std) and the options every task shares.
    """

    def __init__(self, backbone: Backbone, codebook_size: int = 8192, codebook_dim: int = 16, quantizer_seed: int = 0,
                 center_frames: bool = False, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        if codebook_size < 2 or codebook_dim < 1:
            raise ConfigError(f"model.codebook_size must be >= 2 and model.codebook_dim >= 1, got {codebook_size} and {codebook_dim}")
        self.quantizer = RandomProjectionQuantizer(self.stacked_dim, codebook_dim, codebook_size, quantizer_seed)
        self.head = nn.Linear(backbone.out_dim, codebook_size)
        self.code_perplexity = CodePerplexity(codebook_size)
        self.center_frames = center_frames

    def codes(self, stacked: torch.Tensor) -> torch.Tensor:
        """The quantizer's code of each output frame's stacked clean input frames ``(B, T', stacked_dim)``."""
        if self.center_frames:
            frames = stacked.unflatten(-1, (self.backbone.time_reduction, -1))
            stacked = (frames - frames.mean(-1, keepdim=True)).flatten(-2)
        return self.quantizer(stacked)

    def frame_losses(self, predictions: torch.Tensor, stacked: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        codes = self.codes(stacked)
        logits = predictions.float()
        losses = F.cross_entropy(logits.transpose(1, 2), codes, reduction="none")
        return losses, {"acc": (logits.argmax(-1) == codes).float()}

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        features = batch.inputs
        steps = self.output_steps(features.states.shape[1])
        codes = self.codes(stack_frames(features.states, self.backbone.time_reduction, steps))
        real = torch.arange(steps, device=codes.device)[None] < self.backbone.output_lengths(batch.input_lengths)[:, None]
        self.code_perplexity.update(codes, real)
        self.log("val/code_perplexity", self.code_perplexity, batch_size=len(batch.input_lengths))
