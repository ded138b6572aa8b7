"""Masked spectrogram reconstruction: the speech autoencoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ptft.backbones.base import Backbone
from ptft.tasks.masked_speech import MaskedSpeechPretraining


class MaskedSpectrogramPretraining(MaskedSpeechPretraining):
    """Hide time spans of the log-mel input and reconstruct the hidden frames from the backbone's
    states with a linear head, scored by the L1 distance (Mockingjay / TERA style). The masking
    options are :class:`~ptft.tasks.masked_speech.MaskedSpeechPretraining`'s.

    Args:
        backbone: a speech backbone.
        **kwargs: masking (mask_probability, mask_span, mask_noise_std) and the options every task shares.
    """

    def __init__(self, backbone: Backbone, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self.head = nn.Linear(backbone.out_dim, self.stacked_dim)

    def frame_losses(self, predictions: torch.Tensor, stacked: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return (predictions.float() - stacked.float()).abs().mean(-1), {}
