"""DeepSpeech 2 (Amodei et al. 2016): 2-D convolutions over log-mel frames, then recurrent layers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ptft.backbones.base import SequenceFeatures
from ptft.backbones.conv_subsampling import ConvSubsampling, SpeechBackbone, check_at_least, check_dropout


class GRULayer(nn.Module):
    """LayerNorm, a (bidirectional) GRU, dropout. With ``lengths`` (on the CPU, as
    ``pack_padded_sequence`` needs them) the GRU runs on packed sequences, so the backward
    direction starts at each utterance's last real frame and padding changes nothing."""

    def __init__(self, in_dim: int, hidden_size: int, bidirectional: bool, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.gru = nn.GRU(in_dim, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(x)
        if lengths is None:
            out, _ = self.gru(x)
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])
        return self.dropout(out)


class DeepSpeech2(SpeechBackbone):
    """DeepSpeech 2 encoder: two 2-D convolutions (BatchNorm, clipped ReLU) that subsample time
    and mel bands by 2 each, then ``num_layers`` (bidirectional) GRU layers, each after a
    LayerNorm, and a final LayerNorm. A speech backbone (``input_kind: audio``): log-mel frames
    ``(B, T, n_mels)`` -> states ``(B, ceil(T / 4), out_dim)`` (see
    :mod:`ptft.backbones.conv_subsampling`).

    Padded utterances run packed through the bidirectional GRUs, which costs one device-to-host
    copy of the lengths per forward; without a mask (nothing padded), or unidirectional, there is none.

    Args:
        n_mels: mel bands per frame (the data's ``n_mels``).
        conv_channels: channels of both convolutions (kernels (time, mel) 11 x 41 and 11 x 21).
        hidden_size: GRU units per direction.
        num_layers: GRU layers.
        bidirectional: GRUs read both directions; ``out_dim`` is ``2 * hidden_size`` (else ``hidden_size``).
        dropout: dropout after each GRU layer and on the pooled features.
    """

    fine_tuning_options = ("dropout",)

    def __init__(self, n_mels: int = 80, conv_channels: int = 32, hidden_size: int = 256, num_layers: int = 3,
                 bidirectional: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        check_at_least(1, n_mels=n_mels, conv_channels=conv_channels, hidden_size=hidden_size, num_layers=num_layers)
        check_dropout(dropout)
        self.n_mels = n_mels
        self.bidirectional = bidirectional
        self.subsampling = ConvSubsampling(n_mels, conv_channels, kernel_sizes=((11, 41), (11, 21)), batch_norm=True, activation="hardtanh")
        self.out_dim = hidden_size * (2 if bidirectional else 1)
        dims = [self.subsampling.out_dim] + [self.out_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(GRULayer(dim, hidden_size, bidirectional, dropout) for dim in dims)
        self.norm = nn.LayerNorm(self.out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward_features(self, x: SequenceFeatures | torch.Tensor) -> SequenceFeatures:
        """States ``(B, ceil(T / 4), out_dim)`` of log-mel frames and their mask."""
        states, mask = self.split_input(x)
        x, mask = self.subsampling(states, mask)
        lengths = mask.sum(1).cpu() if mask is not None and self.bidirectional else None
        for layer in self.layers:
            x = layer(x, lengths)
        return SequenceFeatures(self.norm(x), mask)

    def layer_groups(self) -> list[list[str]]:
        """Convolutions, each GRU layer, final norm: the units of layer-wise learning-rate decay."""
        groups = [[f"subsampling.{n}" for n, _ in self.subsampling.named_parameters()]]
        groups += [[f"layers.{i}.{n}" for n, _ in layer.named_parameters()] for i, layer in enumerate(self.layers)]
        return [*groups, [f"norm.{n}" for n, _ in self.norm.named_parameters()]]
