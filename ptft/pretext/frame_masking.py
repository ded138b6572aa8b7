"""Span masking of speech frames, shared by masked-reconstruction and BEST-RQ pretraining.

Masks are drawn at the backbone's output frame rate (one output frame covers ``time_reduction``
input frames) and applied to the input frames, so every masked output frame saw only masked input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ptft.backbones.base import SequenceFeatures


def span_mask(lengths: torch.Tensor, steps: int, start_probability: float, span: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B, steps)`` True on masked frames: each real frame starts a span of ``span`` frames with
    probability ``start_probability`` (spans may overlap and are cut at the utterance's end); an
    utterance that drew no span gets one at a random start, so every utterance has masked frames."""
    batch, device = len(lengths), lengths.device
    real = torch.arange(steps, device=device)[None] < lengths[:, None]
    starts = (torch.rand(batch, steps, device=device, generator=generator) < start_probability) & real
    forced = (torch.rand(batch, device=device, generator=generator) * lengths.clamp(min=1)).long().clamp(max=steps - 1)
    none = ~starts.any(1)  # no boolean indexing: nothing here waits for the device
    starts |= none[:, None] & (torch.arange(steps, device=device)[None] == forced[:, None])
    # frame t is masked when a span starts in (t - span, t]: a max-pool over the start indicators
    covered = F.max_pool1d(F.pad(starts[:, None].float(), (span - 1, 0)), kernel_size=span, stride=1)[:, 0]
    return covered.bool() & real


def stack_frames(frames: torch.Tensor, factor: int, steps: int) -> torch.Tensor:
    """``(B, T, F)`` input frames -> ``(B, steps, factor * F)``: each output frame holds the
    ``factor`` input frames it covers (zero-padded past the end)."""
    batch, length, bands = frames.shape
    needed = steps * factor
    frames = F.pad(frames, (0, 0, 0, needed - length)) if needed > length else frames[:, :needed]
    return frames.reshape(batch, steps, factor * bands)


def mask_inputs(features: SequenceFeatures, output_mask: torch.Tensor, factor: int, noise_std: float,
                generator: torch.Generator | None = None) -> SequenceFeatures:
    """The input frames under masked output frames replaced by Gaussian noise of ``noise_std``
    (BEST-RQ's choice; 0 gives zeros, the mean of normalised features)."""
    states, mask = features
    hidden = output_mask.repeat_interleave(factor, dim=1)[:, : states.shape[1]]
    hidden = F.pad(hidden, (0, states.shape[1] - hidden.shape[1]))
    noise = torch.randn(states.shape, device=states.device, generator=generator, dtype=states.dtype) * noise_std
    return SequenceFeatures(torch.where(hidden[..., None], noise, states), mask)
