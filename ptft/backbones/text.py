"""Transformer over token ids, bidirectional (BERT-style) or causal (GPT-style)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ptft.backbones.base import Backbone
from ptft.backbones.transformer import TransformerBlock
from ptft.errors import ConfigError


class TextTransformer(Backbone):
    """Token + learned position embeddings, pre-LN Transformer blocks (``scaled_dot_product_attention``),
    final LayerNorm. ``forward`` pools the token states of padded sequences for classification;
    ``hidden_states`` gives every token's state (language-model heads tie their output weights to
    ``token_embedding``).

    Args:
        vocab_size: rows of the token embedding (at least the tokenizer's vocabulary).
        max_length: longest sequence (number of learned positions).
        depth: number of Transformer blocks.
        width: token dimension.
        heads: attention heads (``width`` must be divisible by it).
        mlp_ratio: hidden size of the MLP relative to ``width``.
        causal: each token attends only to itself and earlier ones (causal LM); else bidirectional.
        pool: pooled features from the first token (``cls``: the tokenizer's class token), the
            ``mean`` of the non-padding tokens, or the ``last`` non-padding token (natural for causal models).
        pad_id: id of the padding token: padded keys are masked out of attention and pooling.
        dropout: dropout on embeddings, in the blocks and on the pooled features.
        attention_dropout: dropout on the attention weights.
    """

    def __init__(
        self,
        vocab_size: int = 8192,
        max_length: int = 128,
        depth: int = 4,
        width: int = 256,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        causal: bool = False,
        pool: Literal["cls", "mean", "last"] = "mean",
        pad_id: int = 0,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean", "last"):
            raise ConfigError(f"pool must be 'cls', 'mean' or 'last', got {pool!r}")
        if vocab_size < 2 or max_length < 1:
            raise ConfigError(f"vocab_size must be >= 2 and max_length >= 1, got {vocab_size} and {max_length}")
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.causal = causal
        self.pool_kind = pool
        self.pad_id = pad_id
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.zeros(max_length, width))
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, mlp_ratio, dropout, attention_dropout=attention_dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = self.feature_channels = width
        self.feature_stride = 1
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def check_data(self, tokenizer, block_size: int | None) -> None:
        """Raise a ConfigError unless ``tokenizer``'s ids (and blocks of ``block_size``) fit this backbone."""
        if block_size is not None and block_size > self.max_length:
            raise ConfigError(f"data.block_size / max_length {block_size} is longer than the backbone's max_length {self.max_length}")
        if tokenizer is None:
            return
        if tokenizer.vocab_size > self.vocab_size:
            raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} tokens but the backbone's vocab_size is {self.vocab_size}; set vocab_size >= {tokenizer.vocab_size}")
        if tokenizer.pad_id != self.pad_id:
            raise ConfigError(f"the tokenizer's padding id is {tokenizer.pad_id} but the backbone's pad_id is {self.pad_id}")

    def hidden_states(self, tokens: torch.Tensor, padding: bool = True) -> torch.Tensor:
        """Token states ``(B, T, width)`` of ids ``(B, T)``. ``padding=False`` promises there is no
        padding (packed pretraining blocks), which lets attention use its fastest kernels."""
        length = tokens.shape[1]
        if length > self.max_length:
            raise ConfigError(f"sequence of {length} tokens is longer than the backbone's max_length {self.max_length}")
        x = self.embedding_dropout(self.token_embedding(tokens) + self.position_embedding[:length])
        mask = None
        if padding:
            mask = (tokens != self.pad_id)[:, None, None, :]  # (B, 1, 1, T): keys a query may attend to
            if self.causal:
                mask = mask & torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        for block in self.blocks:
            x = block(x, mask, self.causal)
        return self.norm(x)

    def forward_features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(tokens)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, width)`` of (right-)padded ids ``(B, T)``."""
        states = self.hidden_states(tokens)
        keep = tokens != self.pad_id
        if self.pool_kind == "cls":
            pooled = states[:, 0]
        elif self.pool_kind == "mean":
            weights = keep.to(states.dtype)[..., None]
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        else:
            last = (keep.sum(1) - 1).clamp(min=0)
            pooled = states[torch.arange(len(states), device=states.device), last]
        return self.dropout(pooled)

    def layer_groups(self) -> list[list[str]]:
        """Embeddings, each block, final norm: the units of layer-wise learning-rate decay."""
        names = [n for n, _ in self.named_parameters()]
        blocks = [[n for n in names if n.startswith(f"blocks.{i}.")] for i in range(len(self.blocks))]
        embeddings = [n for n in names if not n.startswith(("blocks.", "norm."))]
        return [embeddings, *blocks, [n for n in names if n.startswith("norm.")]]
