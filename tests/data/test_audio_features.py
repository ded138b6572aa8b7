"""Log-mel features on the device and SpecAugment."""

import math

import torch

from ptft.backbones.base import SequenceFeatures
from ptft.data.audio_features import LogMelFeatures, LogMelSettings, spec_augment


def tone(seconds: float, frequency: float = 440.0, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return torch.sin(2 * math.pi * frequency * t)


def test_frames_lengths_and_normalisation():
    settings = LogMelSettings(sample_rate=16000, n_mels=40)
    assert (settings.win_length, settings.hop_length) == (400, 160)
    waves = torch.zeros(2, 16000)
    waves[0] = tone(1.0)
    waves[1, :8000] = tone(0.5, 880.0)
    features = LogMelFeatures(settings)(waves, torch.tensor([16000, 8000]))
    assert features.states.shape == (2, 101, 40)
    assert features.mask.sum(1).tolist() == [101, 51]
    real = features.states[1, :51]
    assert torch.allclose(real.mean(0), torch.zeros(40), atol=1e-4)  # per utterance, per band
    assert torch.all(features.states[1, 51:] == 0)  # padding frames are zero


def test_padding_does_not_change_an_utterance():
    extractor = LogMelFeatures(LogMelSettings(n_mels=32))
    wave = tone(0.7, 300.0) + 0.1 * torch.randn(11200, generator=torch.Generator().manual_seed(0))
    alone = extractor(wave[None], torch.tensor([11200]))
    padded = extractor(torch.cat([wave, torch.zeros(4800)])[None], torch.tensor([11200]))
    frames = int(alone.mask.sum())
    assert torch.allclose(alone.states[0], padded.states[0, :frames], atol=1e-4)
    assert torch.all(padded.states[0, frames:] == 0)


def test_features_stay_float32_under_bf16_autocast():
    extractor = LogMelFeatures(LogMelSettings(n_mels=16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = extractor(tone(0.3)[None], torch.tensor([4800]))
    assert features.states.dtype == torch.float32


def test_spec_augment_masks_within_bounds():
    torch.manual_seed(0)
    states = torch.ones(4, 200, 80)
    lengths = torch.tensor([200, 150, 100, 20])
    mask = torch.arange(200)[None] < lengths[:, None]
    states = states * mask[..., None]
    out = spec_augment(SequenceFeatures(states, mask), freq_masks=2, freq_width=10, time_masks=2, time_width=40, max_time_fraction=0.1)
    assert torch.equal(out.mask, mask)
    zero = out.states == 0
    for b, n in enumerate(lengths.tolist()):
        bands_masked = zero[b, :n].all(0).sum().item()  # frequency masks cover every frame
        assert bands_masked <= 2 * 10
        frames_masked = zero[b, :n].all(1).sum().item()
        assert frames_masked <= 2 * min(40, int(n * 0.1))
    assert torch.all(zero[~mask])
    assert zero[mask].float().mean() < 0.5
    again = spec_augment(SequenceFeatures(states, mask), freq_masks=0, time_masks=0)
    assert torch.equal(again.states, states)
