"""Conformer (Gulati et al. 2020): convolutional subsampling, then blocks of torchaudio's
``ConformerLayer`` run with padding masked out of their convolutions."""

from __future__ import annotations

import torch
from torch import nn

from ptft.backbones.base import SequenceFeatures
from ptft.backbones.conv_subsampling import ConvSubsampling, SpeechBackbone, check_at_least, check_dropout
from ptft.errors import ConfigError


class ConformerBlock(nn.Module):
    """torchaudio's ``ConformerLayer`` (half-step FFN, self-attention, convolution module,
    half-step FFN, LayerNorm), with the same submodules and parameter names, run batch-first
    with padding masked: out of attention as keys (as torchaudio does) and also zeroed before
    the depthwise convolution, which torchaudio leaves to see the padded frames' values, so that
    padding changes no real frame. The modules are built by torchaudio (imported here, on use)."""

    def __init__(self, width: int, heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        from torchaudio.models.conformer import ConformerLayer

        layer = ConformerLayer(width, ffn_dim, heads, kernel_size, dropout=dropout)
        for name, child in layer.named_children():
            self.add_module(name, child)
        self.convolution_first = layer.convolution_first
        pointwise, _glu, depthwise = list(self.conv_module.sequential)[:3]
        assert isinstance(pointwise, nn.Conv1d) and isinstance(depthwise, nn.Conv1d) and depthwise.groups == depthwise.in_channels, \
            "torchaudio's ConformerLayer changed its convolution module"

    def convolution(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pointwise, glu, depthwise, *rest = self.conv_module.sequential
        y = glu(pointwise(self.conv_module.layer_norm(x).transpose(1, 2)))  # (B, C, T)
        if mask is not None:
            y = y.masked_fill(~mask[:, None, :], 0)
        y = depthwise(y)
        for module in rest:
            y = module(y)
        return x + y.transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, T, width)``; ``mask`` ``(B, T)`` True at real frames, or None."""
        x = x + 0.5 * self.ffn1(x)
        if self.convolution_first:
            x = self.convolution(x, mask)
        y = self.self_attn_layer_norm(x).transpose(0, 1)  # torchaudio's attention is (T, B, C)
        y, _ = self.self_attn(y, y, y, key_padding_mask=None if mask is None else ~mask, need_weights=False)
        x = x + self.self_attn_dropout(y.transpose(0, 1))
        if not self.convolution_first:
            x = self.convolution(x, mask)
        x = x + 0.5 * self.ffn2(x)
        return self.final_layer_norm(x)


class Conformer(SpeechBackbone):
    """Conformer encoder: :class:`~ptft.backbones.conv_subsampling.ConvSubsampling` (two 3 x 3
    stride-2 convolutions with ``width`` channels and ReLU, projected to ``width``, as ESPnet
    does), dropout, then ``depth`` :class:`ConformerBlock` s (torchaudio's ``ConformerLayer``).
    A speech backbone (``input_kind: audio``): log-mel frames ``(B, T, n_mels)`` -> states
    ``(B, ceil(T / 4), width)``. Like torchaudio's Conformer it adds no position embedding: the
    depthwise convolutions give positions. Every block ends with its own LayerNorm, so there is
    no separate final norm.

    The blocks' parameter names are torchaudio's: ``blocks.{i}.*`` holds what
    ``torchaudio.models.Conformer`` calls ``conformer_layers.{i}.*``.

    Args:
        n_mels: mel bands per frame (the data's ``n_mels``).
        width: model dimension (``width`` must be divisible by ``heads``).
        heads: attention heads.
        depth: Conformer blocks.
        ffn_ratio: hidden size of the feed-forward modules relative to ``width``.
        kernel_size: kernel of the depthwise convolutions (odd).
        dropout: dropout after the subsampling, in the blocks and on the pooled features.
    """

    fine_tuning_options = ("dropout",)

    def __init__(self, n_mels: int = 80, width: int = 144, heads: int = 4, depth: int = 4, ffn_ratio: float = 4.0,
                 kernel_size: int = 31, dropout: float = 0.1) -> None:
        super().__init__()
        check_at_least(1, n_mels=n_mels, width=width, heads=heads, depth=depth, kernel_size=kernel_size)
        check_dropout(dropout)
        if width % heads:
            raise ConfigError(f"width {width} must be divisible by heads {heads}")
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {kernel_size}")
        if ffn_ratio <= 0:
            raise ConfigError(f"ffn_ratio must be > 0, got {ffn_ratio}")
        self.n_mels = n_mels
        self.subsampling = ConvSubsampling(n_mels, width, out_dim=width)
        self.subsampling_dropout = nn.Dropout(dropout)
        ffn_dim = max(1, round(width * ffn_ratio))
        self.blocks = nn.ModuleList(ConformerBlock(width, heads, ffn_dim, kernel_size, dropout) for _ in range(depth))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = width

    def forward_features(self, x: SequenceFeatures | torch.Tensor) -> SequenceFeatures:
        """States ``(B, ceil(T / 4), width)`` of log-mel frames and their mask."""
        states, mask = self.split_input(x)
        x, mask = self.subsampling(states, mask)
        x = self.subsampling_dropout(x)
        for block in self.blocks:
            x = block(x, mask)
        return SequenceFeatures(x, mask)

    def layer_groups(self) -> list[list[str]]:
        """Subsampling, then each block: the units of layer-wise learning-rate decay."""
        groups = [[f"subsampling.{n}" for n, _ in self.subsampling.named_parameters()]]
        return groups + [[f"blocks.{i}.{n}" for n, _ in block.named_parameters()] for i, block in enumerate(self.blocks)]
