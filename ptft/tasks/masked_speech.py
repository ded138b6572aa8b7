"""What masked speech pretraining objectives share: hide spans of log-mel frames, encode, and
predict something about the hidden output frames (the frames themselves, or their codes)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ptft.backbones.base import Backbone
from ptft.data.speech_batch import SpeechBatch
from ptft.errors import ConfigError
from ptft.pretext.frame_masking import mask_inputs, span_mask, stack_frames
from ptft.tasks.base import PtftTask


class MaskedSpeechPretraining(PtftTask):
    """Mask spans of a speech backbone's input and score its predictions at the masked output
    frames. Spans are drawn at the output frame rate (each output frame covers the backbone's
    ``time_reduction`` input frames), their input frames are replaced by noise, and each masked
    output frame is scored against its ``time_reduction`` stacked clean input frames through
    :meth:`frame_losses`, which a subclass defines with its ``head``.

    Args:
        backbone: a speech backbone (``input_kind: audio``: ``DeepSpeech2``, ``Conformer``).
        mask_probability: probability that a real output frame starts a masked span.
        mask_span: length of a masked span, in output frames (10 = 400 ms at 40 ms per frame).
        mask_noise_std: standard deviation of the noise that replaces masked input frames (0: zeros).
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    def __init__(self, backbone: Backbone, mask_probability: float = 0.05, mask_span: int = 10, mask_noise_std: float = 0.1,
                 **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        if backbone.input_kind != "audio" or not hasattr(backbone, "time_reduction"):
            raise ConfigError(f"model.backbone must be a speech backbone (ptft.backbones.Conformer or DeepSpeech2), got {type(backbone).__name__}")
        if not 0 < mask_probability < 1 or mask_span < 1 or mask_noise_std < 0:
            raise ConfigError(f"need 0 < model.mask_probability < 1, model.mask_span >= 1 and model.mask_noise_std >= 0; "
                              f"got {mask_probability}, {mask_span}, {mask_noise_std}")
        self.mask_probability = mask_probability
        self.mask_span = mask_span
        self.mask_noise_std = mask_noise_std
        self.stacked_dim = backbone.time_reduction * backbone.n_mels  # what one output frame covers
        self.head: nn.Module

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.head]

    def frame_losses(self, predictions: torch.Tensor, stacked: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per output frame ``(B, T')``: the loss of the head's outputs ``(B, T', ...)`` against the
        stacked clean input frames ``(B, T', stacked_dim)``, and extra per-frame metrics."""
        raise NotImplementedError

    def output_steps(self, input_frames: int) -> int:
        """Output frames of the backbone for ``input_frames`` input frames (the padded batch length)."""
        return int(self.backbone.output_lengths(torch.tensor([input_frames]))[0])

    def forward(self, batch: SpeechBatch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, extra metrics)`` for a batch of log-mel features."""
        features, lengths = batch.inputs, batch.input_lengths
        factor = self.backbone.time_reduction
        output_lengths = self.backbone.output_lengths(lengths)
        steps = self.output_steps(features.states.shape[1])
        hidden = span_mask(output_lengths, steps, self.mask_probability, self.mask_span, generator)
        encoded = self.backbone.forward_features(mask_inputs(features, hidden, factor, self.mask_noise_std, generator))
        losses, metrics = self.frame_losses(self.head(encoded.states), stack_frames(features.states, factor, steps))
        # the mean over the masked frames, as weights rather than a boolean selection: no host sync per step
        weights = hidden.float()
        count = weights.sum().clamp(min=1)
        return (losses * weights).sum() / count, {k: (v * weights).sum() / count for k, v in metrics.items()}

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        loss, metrics = self(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in metrics.items()})
        return loss

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        device = batch.input_lengths.device
        loss, metrics = self(batch, torch.Generator(device).manual_seed(batch_idx))  # the same masks every epoch
        size = len(batch.input_lengths)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=size)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, sync_dist=True, batch_size=size)
