"""The batch every speech DataModule gives and every speech task reads."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ptft.backbones.base import SequenceFeatures


class SpeechBatch(NamedTuple):
    """Utterances with their transcripts (when labelled).

    ``inputs``: waveforms ``(B, S)`` as the DataLoader gives them, replaced on the device by
    log-mel :class:`~ptft.backbones.base.SequenceFeatures` (``(B, T, n_mels)`` frames and their
    mask) in ``on_after_batch_transfer``; ``input_lengths``: samples per waveform (frames after the
    transfer); ``targets``: ``(B, L)`` character ids padded with the vocabulary's pad id and
    ``target_lengths``; both None for unlabelled audio.
    """

    inputs: torch.Tensor | SequenceFeatures
    input_lengths: torch.Tensor
    targets: torch.Tensor | None = None
    target_lengths: torch.Tensor | None = None
