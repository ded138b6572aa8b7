"""What every speech encoder shares: 2-D convolutional subsampling of log-mel frames by 4 in time
(:class:`ConvSubsampling`) and the audio input contract (:class:`SpeechBackbone`).

A speech backbone reads :class:`~ptft.backbones.base.SequenceFeatures` of log-mel frames
``(B, T, n_mels)`` with their mask ``(B, T)`` (True at real frames, right padding; None: nothing
padded) and gives states ``(B, T', C)`` with their mask at a quarter of the frame rate:
``T' = ceil(T / 4)``, and an utterance of ``L`` real frames keeps ``output_lengths(L) = ceil(L / 4)``
of them (at least 1). Padding never changes the states of real frames: padded positions are
zeroed before every convolution, which then sees exactly the zeros of its own padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from ptft.backbones.base import SequenceBackbone, SequenceFeatures
from ptft.errors import ConfigError

if TYPE_CHECKING:
    from ptft.data.spec import DataSpec

ACTIVATIONS = {"relu": nn.ReLU, "hardtanh": lambda: nn.Hardtanh(0.0, 20.0)}  # hardtanh: DeepSpeech 2's clipped ReLU


def check_at_least(minimum: float, **values: float) -> None:
    """A ConfigError naming the first argument below ``minimum``."""
    for name, value in values.items():
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")


def lengths_to_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(B, steps)`` True at the first ``lengths[b]`` positions of each row."""
    return torch.arange(steps, device=lengths.device)[None] < lengths[:, None]


class ConvSubsampling(nn.Module):
    """Two stride-2 2-D convolutions over (time, mel) as in ESPnet / Conformer and DeepSpeech 2:
    ``(B, T, n_mels)`` frames -> ``(B, ceil(T / 4), out_dim)``.

    Each convolution has an odd kernel ``(k_time, k_mel)``, stride 2 on both axes and "same"
    padding ``((k_time - 1) / 2, (k_mel - 1) / 2)``, so it maps ``L`` frames to ``ceil(L / 2)``
    (never to 0: even one frame gives one) and ``n`` mel bands to ``ceil(n / 2)``. The channels
    of the last convolution times its mel bands are flattened per frame and, with ``out_dim``,
    projected by a Linear to ``out_dim``.

    Args:
        n_mels: mel bands per input frame.
        channels: output channels of both convolutions.
        out_dim: width of the projection after the convolutions; None: no projection (the output
            is ``channels * ceil(ceil(n_mels / 2) / 2)`` wide).
        kernel_sizes: ``(k_time, k_mel)`` of each of the two convolutions (odd).
        batch_norm: BatchNorm2d after each convolution (then the convolutions have no bias).
            In training its statistics include the zeroed padding positions.
        activation: ``relu``, or ``hardtanh`` (DeepSpeech 2's ReLU clipped at 20).
    """

    time_reduction: ClassVar[int] = 4

    def __init__(self, n_mels: int, channels: int, out_dim: int | None = None,
                 kernel_sizes: Sequence[Sequence[int]] = ((3, 3), (3, 3)), batch_norm: bool = False,
                 activation: str = "relu") -> None:
        super().__init__()
        check_at_least(1, n_mels=n_mels, channels=channels)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        kernels = [tuple(int(k) for k in kernel) for kernel in kernel_sizes]
        if len(kernels) != 2 or any(len(k) != 2 or k[0] < 1 or k[1] < 1 or k[0] % 2 == 0 or k[1] % 2 == 0 for k in kernels):
            raise ConfigError(f"kernel_sizes must be two odd (time, mel) pairs, got {kernel_sizes}")
        self.kernel_sizes = kernels
        self.convs = nn.ModuleList()
        bands, in_channels = n_mels, 1
        for kernel in kernels:
            layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, kernel, stride=2, padding=(kernel[0] // 2, kernel[1] // 2), bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(ACTIVATIONS[activation]())
            self.convs.append(nn.Sequential(*layers))
            bands, in_channels = (bands + 1) // 2, channels
        flat = channels * bands
        self.projection = nn.Linear(flat, out_dim) if out_dim is not None else nn.Identity()
        self.out_dim = out_dim if out_dim is not None else flat

    def conv_lengths(self, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Real frames after each convolution, by its arithmetic: ``floor((L + 2p - k) / 2) + 1``."""
        out = []
        for k, _ in self.kernel_sizes:
            lengths = torch.div(lengths + 2 * (k // 2) - k, 2, rounding_mode="floor") + 1
            out.append(lengths)
        return out

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Real output frames of utterances of ``lengths`` real input frames: ``ceil(L / 4)``,
        and at least 1 (an empty utterance gives one frame, computed from zeros)."""
        return self.conv_lengths(lengths)[-1].clamp(min=1)

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, T, n_mels)`` frames and their mask -> ``(B, ceil(T / 4), out_dim)`` and the mask
        at that rate (None stays None). Padded outputs are 0."""
        x = states[:, None]  # (B, 1, T, n_mels)
        if mask is None:
            for conv in self.convs:
                x = conv(x)
        else:
            x = x.masked_fill(~mask[:, None, :, None], 0)
            for conv, lengths in zip(self.convs, self.conv_lengths(mask.sum(1)), strict=True):
                x = conv(x)
                x = x.masked_fill(~lengths_to_mask(lengths, x.shape[2])[:, None, :, None], 0)
        batch, channels, steps, bands = x.shape
        x = self.projection(x.permute(0, 2, 1, 3).reshape(batch, steps, channels * bands))
        if mask is None:
            return x, None
        mask = lengths_to_mask(self.output_lengths(mask.sum(1)), steps)
        return x.masked_fill(~mask[..., None], 0), mask


class SpeechBackbone(SequenceBackbone):
    """A sequence backbone of log-mel frames (``input_kind: audio``) that starts with
    ``self.subsampling``, a :class:`ConvSubsampling`. ``forward_features`` takes
    :class:`~ptft.backbones.base.SequenceFeatures` (or a bare ``(B, T, n_mels)`` tensor: nothing
    padded); ``forward`` gives the mean of the real output frames."""

    input_kind: ClassVar[str] = "audio"
    time_reduction: ClassVar[int] = ConvSubsampling.time_reduction
    n_mels: int
    subsampling: ConvSubsampling

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames (``forward_features(x).mask.sum(1)``) of utterances of ``lengths`` input
        frames: ``ceil(lengths / 4)``, at least 1."""
        return self.subsampling.output_lengths(lengths)

    def check_data(self, spec: DataSpec) -> None:
        """Raise a ConfigError unless the data is audio with this backbone's ``n_mels``."""
        super().check_data(spec)
        if spec.audio is not None and spec.audio.n_mels != self.n_mels:
            raise ConfigError(
                f"the data gives {spec.audio.n_mels} mel bands per frame but the backbone {type(self).__name__} reads n_mels={self.n_mels}; "
                f"set model.backbone.init_args.n_mels={spec.audio.n_mels} or data.n_mels={self.n_mels}"
            )

    def split_input(self, x: SequenceFeatures | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(states, mask)`` of the input, its shape checked."""
        states, mask = (x, None) if isinstance(x, torch.Tensor) else x
        if states.dim() != 3 or states.shape[-1] != self.n_mels:
            raise ConfigError(f"{type(self).__name__} reads log-mel frames (B, T, n_mels={self.n_mels}), got a tensor of shape {tuple(states.shape)}")
        return states, mask
