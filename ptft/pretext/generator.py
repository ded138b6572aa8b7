"""DCGAN-style generator: a latent vector up to an image (Radford et al. 2015)."""

from __future__ import annotations

import torch
from torch import nn

from ptft.backbones.norm import NormKind, norm_layer
from ptft.errors import ConfigError

START = 4  # the latent is projected to a START x START feature map, then doubled until image_size


def generator_sizes(largest: int = 256) -> list[int]:
    """Image sizes the generator can produce: 4 * 2**k for k >= 1."""
    sizes, size = [], START * 2
    while size <= largest:
        sizes.append(size)
        size *= 2
    return sizes


class DCGANGenerator(nn.Module):
    """Latent ``(B, latent_dim)`` -> image ``(B, out_channels, image_size, image_size)`` in [-1, 1].

    A transposed 4x4 convolution projects the latent to a 4x4 map; each following 4x4 stride-2
    transposed convolution (norm + ReLU) doubles the resolution and halves the channels, and the
    last one outputs ``out_channels`` through tanh. At 64 px with ``base_width=64`` the channels are
    512-256-128-64-3, the DCGAN paper's generator.

    Args:
        latent_dim: size of the latent vector.
        image_size: output side in pixels, a power of two from 8 (32, 64, 128, ...).
        base_width: channels of the last hidden layer; doubled per layer towards the latent.
        max_width: cap on the number of channels.
        out_channels: image channels.
        norm: normalisation of hidden layers (``batch``, ``group`` or ``none``).
    """

    def __init__(
        self,
        latent_dim: int = 128,
        image_size: int = 64,
        base_width: int = 64,
        max_width: int = 512,
        out_channels: int = 3,
        norm: NormKind = "batch",
    ) -> None:
        super().__init__()
        if image_size not in generator_sizes(max(image_size, START * 2)):
            raise ConfigError(
                f"the generator cannot produce {image_size} px images: data.image_size must be a power of two "
                f"from 8, e.g. {', '.join(map(str, generator_sizes(128)))}"
            )
        if latent_dim < 1 or base_width < 1:
            raise ConfigError(f"latent_dim and base_width must be >= 1, got {latent_dim}, {base_width}")
        self.latent_dim = latent_dim
        num_upsamplings = (image_size // START).bit_length() - 1
        widths = [min(base_width * 2 ** (num_upsamplings - 1 - i), max_width) for i in range(num_upsamplings)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], kernel_size=START, bias=norm == "none"),
            norm_layer(norm, widths[0]),
            nn.ReLU(inplace=True),
        ]
        for channels, next_channels in zip(widths, widths[1:]):
            layers += [
                nn.ConvTranspose2d(channels, next_channels, kernel_size=4, stride=2, padding=1, bias=norm == "none"),
                norm_layer(norm, next_channels),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], out_channels, kernel_size=4, stride=2, padding=1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.layers(latent[:, :, None, None])
