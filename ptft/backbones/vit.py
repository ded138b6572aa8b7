"""Vision Transformer (Dosovitskiy et al. 2020) that can encode a subset of its patches (for MAE)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ptft.backbones.base import SpatialBackbone, transformer_layer_groups
from ptft.backbones.transformer import Activation, TransformerBlock, check_block_options
from ptft.errors import ConfigError


DEFAULT_IMAGE_SIZE = 64  # a ViT's image_size when neither the config nor the data gives one


def sincos_position_embedding(height: int, width: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding ``(height * width, dim)``: half the channels encode the row,
    half the column, each as sin/cos at geometrically spaced frequencies (MAE's choice)."""
    if dim % 4:
        raise ConfigError(f"a 2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    parts = []
    for positions in (rows.flatten(), cols.flatten()):
        angles = positions[:, None] * frequencies[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


def resize_position_embedding(embedding: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic interpolation of a learned ``(old_h * old_w, dim)`` embedding to another grid."""
    if old_grid == new_grid:
        return embedding
    dim = embedding.shape[-1]
    grid = embedding.reshape(1, *old_grid, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], dim).to(embedding.dtype)


class ViT(SpatialBackbone):
    """Patch embedding + position embedding + [class token] + pre-LN Transformer blocks.

    ``forward_features`` returns the patch tokens as a ``(B, width, H/patch, W/patch)`` map, so
    the ViT serves every task the convolutional backbones do; ``tokens(images, keep)`` encodes only
    the patches in ``keep`` (MAE). Inputs of another size than ``image_size`` (a multiple of the
    patch size) get a sin-cos embedding for their grid, or the learned one interpolated.

    Args:
        image_size: side of the training images in pixels; a multiple of ``patch_size``. None (the
            default): the data's image size, which the ``ptft`` CLI fills in from ``data.image_size``;
            64 when built without data. A value given explicitly must equal the data's (MAE checks it).
        patch_size: side of a square patch.
        depth: number of Transformer blocks.
        width: token dimension.
        heads: attention heads (``width`` must be divisible by it).
        mlp_ratio: hidden size of the MLP relative to ``width``.
        position_embedding: ``sincos`` (fixed 2-D) or ``learned``.
        class_token: prepend a learned class token.
        pool: pooled features from the ``cls`` token or the ``mean`` of the patch tokens.
        in_channels: image channels.
        dropout: dropout in the blocks and on the pooled features.
        drop_path: stochastic-depth rate of the last block (linearly increasing from 0 over the blocks).
        norm_eps: epsilon of every LayerNorm (blocks and the final norm); 1e-6 (timm's), Hugging
            Face ViTs use 1e-12.
        class_token_position: the class token has its own learned position embedding
            (``class_position``, ``(1, width)``, added to the class token), as in Hugging Face ViT
            and timm's default layout, where the position embedding has a slot for the class token.
            False (the default): only patches get positions (timm's ``no_embed_class``).
            Needs ``class_token``.
        activation: the MLP's GELU, ``gelu`` (exact) or ``gelu_tanh`` (its tanh approximation).
    """

    fine_tuning_options = ("image_size", "pool", "dropout", "drop_path")  # another image size: positions are interpolated

    def __init__(
        self,
        image_size: int | None = None,
        patch_size: int = 8,
        depth: int = 6,
        width: int = 192,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        position_embedding: Literal["sincos", "learned"] = "sincos",
        class_token: bool = True,
        pool: Literal["cls", "mean"] = "cls",
        in_channels: int = 3,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        class_token_position: bool = False,
        activation: Activation = "gelu",
    ) -> None:
        super().__init__()
        check_block_options("pre", activation, norm_eps)
        image_size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
        if patch_size < 1 or image_size % patch_size:
            raise ConfigError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        if position_embedding not in ("sincos", "learned"):
            raise ConfigError(f"position_embedding must be 'sincos' or 'learned', got {position_embedding!r}")
        if pool not in ("cls", "mean") or (pool == "cls" and not class_token):
            raise ConfigError(f"pool must be 'mean', or 'cls' with class_token: true; got pool={pool!r}, class_token={class_token}")
        if class_token_position and not class_token:
            raise ConfigError("class_token_position: true needs class_token: true (it is the class token's position embedding)")
        if not 0 <= drop_path < 1:
            raise ConfigError(f"drop_path must be in [0, 1), got {drop_path}")
        self.patch_size = patch_size
        self.grid = (image_size // patch_size,) * 2
        self.patch_embed = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width)) if class_token else None
        self.class_position = nn.Parameter(torch.zeros(1, width)) if class_token_position else None
        self.learned_position = position_embedding == "learned"
        embedding = sincos_position_embedding(*self.grid, width)
        if self.learned_position:
            self.position_embedding = nn.Parameter(torch.randn_like(embedding) * 0.02)
        else:
            self.register_buffer("position_embedding", embedding, persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, mlp_ratio, dropout, drop_path * i / max(depth - 1, 1),
                                                     activation=activation, norm_eps=norm_eps) for i in range(depth))
        self.norm = nn.LayerNorm(width, eps=norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.pool_kind = pool
        self.out_dim = self.feature_channels = width
        self.feature_stride = patch_size
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.xavier_uniform_(self.patch_embed.weight.flatten(1))
        if self.class_token is not None:
            nn.init.normal_(self.class_token, std=0.02)
        if self.class_position is not None:
            nn.init.normal_(self.class_position, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def spec(self) -> dict:
        """The spec with the image size this ViT was built for (never None)."""
        spec = super().spec()
        spec["init_args"]["image_size"] = self.grid[0] * self.patch_size
        return spec

    @property
    def num_prefix_tokens(self) -> int:
        return 0 if self.class_token is None else 1

    def positions(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embedding ``(grid_h * grid_w, width)`` for a patch grid."""
        if self.learned_position:
            return resize_position_embedding(self.position_embedding, self.grid, grid)
        if grid == self.grid:
            return self.position_embedding
        return sincos_position_embedding(*grid, self.out_dim).to(self.position_embedding)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens with positions ``(B, N, width)`` and the patch grid."""
        if images.shape[-1] % self.patch_size or images.shape[-2] % self.patch_size:
            raise ConfigError(f"image size {tuple(images.shape[-2:])} is not divisible by the ViT's patch_size {self.patch_size}")
        patches = self.patch_embed(images)
        grid = (patches.shape[-2], patches.shape[-1])
        return patches.flatten(2).transpose(1, 2) + self.positions(grid).to(patches.dtype), grid

    def with_class_token(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` with the class token (plus its position, with ``class_token_position``) prepended, if any."""
        if self.class_token is None:
            return tokens
        first = self.class_token if self.class_position is None else self.class_token + self.class_position
        return torch.cat([first.expand(len(tokens), -1, -1).to(tokens.dtype), tokens], dim=1)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend the class token, run the blocks, normalise."""
        tokens = self.with_class_token(tokens)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def tokens(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encoded tokens ``(B, prefix + K, width)``: the class token (if any), then the patches
        whose indices (row-major) are in ``keep`` ``(B, K)``, or all patches."""
        tokens, _ = self.embed(images)
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        return self.encode(tokens)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens, grid = self.embed(x)
        patches = self.encode(tokens)[:, self.num_prefix_tokens:]
        return patches.transpose(1, 2).reshape(len(x), -1, *grid)

    def stage_channels(self) -> list[int]:
        """Each block's width."""
        return [self.out_dim] * len(self.blocks)

    def stage_features(self, x: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """Each block's patch tokens (class token dropped) as a ``(B, width, H/patch, W/patch)``
        grid; the last before the final norm, unlike ``forward_features``."""
        tokens, grid = self.embed(x)
        tokens = self.with_class_token(tokens)
        maps = []
        for block in self.blocks[:depth]:
            tokens = block(tokens)
            maps.append(tokens[:, self.num_prefix_tokens:].transpose(1, 2).reshape(len(x), -1, *grid))
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, _ = self.embed(x)
        tokens = self.encode(tokens)
        pooled = tokens[:, 0] if self.pool_kind == "cls" else tokens[:, self.num_prefix_tokens:].mean(1)
        return self.dropout(pooled)

    def adapt_state_dict(self, state: dict[str, torch.Tensor], source_spec: dict) -> dict[str, torch.Tensor]:
        """Weights of a ViT trained at another image size: the learned position embedding is
        interpolated to this grid. Patch size, width and channels must match: nothing interpolates those."""
        source = {**self.spec()["init_args"], **source_spec.get("init_args", {})}
        own = self.spec()["init_args"]
        different = [f"{key} {source[key]} there, {own[key]} here" for key in ("patch_size", "width", "in_channels") if source[key] != own[key]]
        if different:
            raise ConfigError(
                "the pretrained ViT does not fit the configured one (" + "; ".join(different) + "): position-embedding "
                "interpolation only covers another image size; drop model.backbone to use the pretrained ViT as it is"
            )
        if self.learned_position and "position_embedding" in state:
            old_grid = (source["image_size"] // source["patch_size"],) * 2
            state = {**state, "position_embedding": resize_position_embedding(state["position_embedding"], old_grid, self.grid)}
        return state

    def layer_groups(self) -> list[list[str]]:
        """Embeddings, each block, final norm: the units of layer-wise learning-rate decay."""
        return transformer_layer_groups(self, len(self.blocks))
