"""Log-mel features and SpecAugment, computed on the device after the batch is transferred.

A speech DataModule hands out waveforms; :class:`LogMelFeatures` turns them into the ``(B, T,
n_mels)`` frames every speech backbone reads, and :func:`spec_augment` masks them during
training. The settings travel with checkpoints and exports (``DataSpec.audio``), so ``ptft
transcribe`` computes exactly the features the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ptft.backbones.base import SequenceFeatures
from ptft.errors import ConfigError


@dataclass(frozen=True)
class LogMelSettings:
    """How waveforms become log-mel frames.

    Args:
        sample_rate: rate every waveform is resampled to (Hz).
        n_mels: mel bands per frame: the ``n_mels`` of a speech backbone.
        window_ms: analysis window (and FFT) length in milliseconds.
        hop_ms: frame shift in milliseconds.
    """

    sample_rate: int = 16000
    n_mels: int = 80
    window_ms: float = 25.0
    hop_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.sample_rate < 1000 or self.n_mels < 1 or not 0 < self.hop_ms <= self.window_ms:
            raise ConfigError(f"audio settings need sample_rate >= 1000, n_mels >= 1 and 0 < hop_ms <= window_ms; got {self}")

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.window_ms / 1000)

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames of waveforms of ``num_samples`` samples (centred STFT)."""
        return torch.div(num_samples, self.hop_length, rounding_mode="floor") + 1


class LogMelFeatures(nn.Module):
    """Waveforms ``(B, S)`` with their lengths in samples -> :class:`SequenceFeatures` of
    ``log(mel + 1e-6)`` frames ``(B, T, n_mels)``, each utterance normalised to zero mean and unit
    variance per band over its real frames (padding frames are 0), and the frame mask. The STFT pads
    with zeros, as batching does, so an utterance's features do not depend on its batch. Always
    computed in float32, also under mixed precision."""

    def __init__(self, settings: LogMelSettings) -> None:
        super().__init__()
        import torchaudio  # imported on use: only speech needs it

        self.settings = settings
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=settings.sample_rate, n_fft=settings.win_length, win_length=settings.win_length,
            hop_length=settings.hop_length, n_mels=settings.n_mels, center=True, pad_mode="constant", power=2.0,
        )

    @torch.no_grad()
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> SequenceFeatures:
        with torch.autocast(waveforms.device.type, enabled=False):
            mel = self.mel(waveforms.float()).transpose(1, 2)  # (B, T, n_mels)
            frames = self.settings.num_frames(lengths).clamp(max=mel.shape[1])
            mask = torch.arange(mel.shape[1], device=mel.device)[None] < frames[:, None]
            weights = mask[..., None].float()
            logmel = torch.log(mel + 1e-6) * weights
            count = weights.sum(1, keepdim=True).clamp(min=1)
            mean = logmel.sum(1, keepdim=True) / count
            variance = ((logmel - mean) ** 2 * weights).sum(1, keepdim=True) / count
            normalised = (logmel - mean) / (variance + 1e-5).sqrt() * weights
        return SequenceFeatures(normalised, mask)


def spec_augment(features: SequenceFeatures, freq_masks: int = 2, freq_width: int = 27, time_masks: int = 2,
                 time_width: int = 40, max_time_fraction: float = 0.05) -> SequenceFeatures:
    """SpecAugment (Park et al. 2019) without time warping: per utterance, ``freq_masks`` bands of
    up to ``freq_width`` mel channels and ``time_masks`` spans of up to ``time_width`` frames (and
    at most ``max_time_fraction`` of the utterance's real frames each) are set to 0, the mean of
    normalised features. Draws from torch's global random stream (seeded and checkpointed by ptft)."""
    states, mask = features
    batch, steps, bands = states.shape
    device = states.device
    lengths = mask.sum(1) if mask is not None else torch.full((batch,), steps, device=device)
    keep = torch.ones(batch, steps, bands, dtype=torch.bool, device=device)

    def spans(count: int, limit: torch.Tensor, extent: torch.Tensor, size: int) -> torch.Tensor:
        """(B, size) True inside ``count`` random spans of width < ``limit`` within ``[0, extent)``."""
        covered = torch.zeros(batch, size, dtype=torch.bool, device=device)
        position = torch.arange(size, device=device)[None]
        for _ in range(count):
            width = (torch.rand(batch, device=device) * (limit + 1).float()).long()
            start = (torch.rand(batch, device=device) * (extent - width + 1).clamp(min=1).float()).long()
            covered |= (position >= start[:, None]) & (position < (start + width)[:, None])
        return covered

    band_limit = torch.full((batch,), min(freq_width, bands), device=device)
    keep &= ~spans(freq_masks, band_limit, torch.full((batch,), bands, device=device), bands)[:, None, :]
    time_limit = torch.minimum(torch.full_like(lengths, time_width), (lengths.float() * max_time_fraction).long())
    keep &= ~spans(time_masks, time_limit, lengths, steps)[:, :, None]
    return SequenceFeatures(states * keep, mask)
