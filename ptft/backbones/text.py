"""Transformer over token ids, bidirectional (BERT-style) or causal (GPT-style)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from ptft.backbones.base import SequenceBackbone, SequenceFeatures, transformer_layer_groups
from ptft.backbones.transformer import Activation, NormPosition, TransformerBlock, check_block_options
from ptft.errors import ConfigError

if TYPE_CHECKING:
    from ptft.data.spec import DataSpec


class TextTransformer(SequenceBackbone):
    """Token + learned position embeddings, pre-LN Transformer blocks (``scaled_dot_product_attention``),
    final LayerNorm; or, with ``norm_position: post`` (BERT's), LayerNorm on the embeddings, post-LN
    blocks and no final norm. A sequence backbone (``input_kind: text``): ``forward_features`` gives every
    token's state with the padding mask, ``forward`` pools them for classification, and
    ``hidden_states`` gives the states alone (language-model heads tie their output weights to
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
        bias: biases in the blocks' Linear layers and in every LayerNorm; ``False`` drops them all
            (nanoGPT's ``bias=False``).
        scaled_residual_init: initialise the residual projections (attention output and the MLP's
            second Linear) with std ``0.02 / sqrt(2 * depth)`` as GPT-2 / nanoGPT do, instead of 0.02.
        norm_position: ``pre`` (GPT-2's, ptft's default): LayerNorm before attention and MLP, and a
            final LayerNorm ``norm``; ``post`` (BERT's): LayerNorm after each residual sum, a LayerNorm
            ``embedding_norm`` on the embeddings (``LN(token + position + token type)``, then dropout)
            and no final norm.
        token_types: rows of a token-type (segment) embedding ``token_type_embedding`` (BERT's
            ``type_vocab_size``); 0: none. ptft's inputs are single-segment, so row 0 is added to
            every token; the other rows are kept only so that a BERT checkpoint round-trips.
        norm_eps: epsilon of every LayerNorm; None keeps ptft's defaults (1e-6 in the blocks and in
            ``embedding_norm``, 1e-5 in the final ``norm``).
        activation: the MLP's GELU: exact (``gelu``) or its tanh approximation (``gelu_tanh``, GPT-2's).
    """

    input_kind = "text"
    fine_tuning_options = ("pool", "dropout", "attention_dropout")

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
        bias: bool = True,
        scaled_residual_init: bool = False,
        norm_position: NormPosition = "pre",
        token_types: int = 0,
        norm_eps: float | None = None,
        activation: Activation = "gelu",
    ) -> None:
        super().__init__()
        if vocab_size < 2 or max_length < 1:
            raise ConfigError(f"vocab_size must be >= 2 and max_length >= 1, got {vocab_size} and {max_length}")
        if token_types < 0:
            raise ConfigError(f"token_types must be >= 0, got {token_types}")
        block_eps = 1e-6 if norm_eps is None else norm_eps
        check_block_options(norm_position, activation, block_eps)
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.causal = causal
        self.pool_kind = self.check_pool(pool)
        self.pad_id = pad_id
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.zeros(max_length, width))
        self.token_type_embedding = nn.Parameter(torch.zeros(token_types, width)) if token_types else None
        self.post_norm = norm_position == "post"
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, mlp_ratio, dropout, attention_dropout=attention_dropout, bias=bias,
                                                     norm_position=norm_position, activation=activation, norm_eps=block_eps)
                                    for _ in range(depth))
        # post-LN (BERT): the embeddings are normalised, each block ends in a LayerNorm, there is no final one
        self.embedding_norm = nn.LayerNorm(width, eps=block_eps, bias=bias) if self.post_norm else None
        self.norm = nn.Identity() if self.post_norm else nn.LayerNorm(width, eps=1e-5 if norm_eps is None else norm_eps, bias=bias)
        self.embedding_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = width
        self._init_weights(scaled_residual_init)

    def _init_weights(self, scaled_residual_init: bool) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.02)
        if self.token_type_embedding is not None:
            nn.init.normal_(self.token_type_embedding, std=0.02)
        residual = {id(m) for block in self.blocks for m in (block.proj, block.mlp_out)} if scaled_residual_init else set()
        residual_std = 0.02 / math.sqrt(2 * max(len(self.blocks), 1))
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=residual_std if id(module) in residual else 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def check_data(self, spec: DataSpec) -> None:
        """Raise a ConfigError unless the data's token ids and sequence length fit this backbone."""
        super().check_data(spec)
        if spec.max_length is not None and spec.max_length > self.max_length:
            raise ConfigError(f"data.block_size / max_length {spec.max_length} is longer than the backbone's max_length {self.max_length}")
        tokenizer = spec.tokenizer
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
        x = self.token_embedding(tokens) + self.position_embedding[:length]
        if self.token_type_embedding is not None:
            x = x + self.token_type_embedding[0]  # single-segment inputs: every token has type 0
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        x = self.embedding_dropout(x)
        mask = None
        if padding:
            mask = (tokens != self.pad_id)[:, None, None, :]  # (B, 1, 1, T): keys a query may attend to
            if self.causal:
                mask = mask & torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        for block in self.blocks:
            x = block(x, mask, self.causal)
        return self.norm(x)

    def forward_features(self, tokens: torch.Tensor) -> SequenceFeatures:
        """States ``(B, T, width)`` of (right-)padded ids ``(B, T)`` and their padding mask."""
        return SequenceFeatures(self.hidden_states(tokens), tokens != self.pad_id)

    def layer_groups(self) -> list[list[str]]:
        """Embeddings (with ``embedding_norm`` and ``token_type_embedding``), each block, final norm
        (none with ``norm_position: post``): the units of layer-wise learning-rate decay."""
        return [group for group in transformer_layer_groups(self, len(self.blocks)) if group]
