"""Encoder-decoder Transformer over token ids (BART / BERT2BERT shape) with a KV cache for generation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ptft.backbones.base import SequenceBackbone, SequenceFeatures
from ptft.backbones.copy_attention import CopyAttention
from ptft.backbones.text import TextTransformer
from ptft.backbones.transformer import TransformerBlock
from ptft.errors import ConfigError

if TYPE_CHECKING:
    from ptft.data.spec import DataSpec


@dataclass
class DecoderCache:
    """What generation keeps between decoder calls: each block's self-attention keys and values
    ``(B, heads, T, head_dim)`` so far, and its cross-attention keys and values of the encoder states
    (computed once). ``length`` is the number of target positions already decoded."""

    self_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.self_kv[0][0].shape[2] if self.self_kv else 0

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Keep the rows ``index`` of every cached tensor (beam search: the surviving hypotheses);
        ``cross=False`` leaves the cross-attention rows, for an ``index`` that maps each row to a row
        of the same input (their encoder states, hence cross keys and values, are the same)."""
        self.self_kv = [(k[index], v[index]) for k, v in self.self_kv]
        if cross:
            self.cross_kv = [(k[index], v[index]) for k, v in self.cross_kv]


class DecoderBlock(TransformerBlock):
    """A pre-LN decoder block: causal self-attention, cross-attention to the encoder states, MLP,
    each ``x + drop_path(sublayer(LN(x)))``. Its self-attention and MLP have the names and shapes of
    a :class:`TransformerBlock`'s, so an encoder block's weights fit them (BERT2BERT); the
    cross-attention (``norm_cross``, ``cross_q``, ``cross_kv``, ``cross_proj``) is its own."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 attention_dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__(width, heads, mlp_ratio, dropout, attention_dropout=attention_dropout, bias=bias)
        self.norm_cross = nn.LayerNorm(width, eps=1e-6, bias=bias)
        self.cross_q = nn.Linear(width, width, bias=bias)
        self.cross_kv = nn.Linear(width, 2 * width, bias=bias)
        self.cross_proj = nn.Linear(width, width, bias=bias)

    def split_heads(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """``(B, T, parts * width)`` as ``parts`` tensors ``(B, heads, T, head_dim)``."""
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, parts, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, tokens, _ = x.shape
        return x.transpose(1, 2).reshape(batch, tokens, -1)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values of the encoder states ``(B, S, width)``."""
        return self.split_heads(self.cross_kv(memory), 2)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], memory_mask: torch.Tensor | None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The block's output for target states ``x`` ``(B, T, width)``, and its self-attention keys
        and values including ``past`` (those of earlier positions). ``memory_mask``: ``(B, 1, 1, S)``,
        True at real encoder positions (None: no padding). Position ``i`` of ``x`` attends to every
        past position and to positions ``<= i`` of ``x``."""
        dropout = self.attention_dropout if self.training else 0.0
        q, k, v = self.split_heads(self.qkv(self.norm1(x)), 3)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        new, seen = q.shape[2], k.shape[2]
        # the positions after `past` see all of it and each other causally (one new position: everything)
        causal = torch.ones(new, seen, dtype=torch.bool, device=x.device).tril(seen - new) if past is not None and new > 1 else None
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=causal, dropout_p=dropout, is_causal=past is None and new > 1)
        x = x + self.drop_path(self.dropout(self.proj(self.merge_heads(attended))))
        q = self.split_heads(self.cross_q(self.norm_cross(x)), 1)[0]
        attended = F.scaled_dot_product_attention(q, *memory_kv, attn_mask=memory_mask, dropout_p=dropout)
        x = x + self.drop_path(self.dropout(self.cross_proj(self.merge_heads(attended))))
        return x + self.drop_path(self.mlp(self.norm2(x))), (k, v)


class TransformerDecoder(nn.Module):
    """The decoder stack: learned target positions, :class:`DecoderBlock` s and a final LayerNorm.
    It reads token embeddings it is given (the encoder's, shared)."""

    def __init__(self, max_length: int, depth: int, width: int, heads: int, mlp_ratio: float, dropout: float,
                 attention_dropout: float, bias: bool, scaled_residual_init: bool) -> None:
        super().__init__()
        self.max_length = max_length
        self.position_embedding = nn.Parameter(torch.zeros(max_length, width))
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(DecoderBlock(width, heads, mlp_ratio, dropout, attention_dropout, bias) for _ in range(depth))
        self.norm = nn.LayerNorm(width, bias=bias)
        self.copy_attention: CopyAttention | None = None  # set by Seq2SeqTransformer(copy_attention=True)
        nn.init.normal_(self.position_embedding, std=0.02)
        residual = 0.02 / (2 * depth) ** 0.5 if scaled_residual_init else 0.02
        for block in self.blocks:
            for module in block.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=residual if module in (block.proj, block.cross_proj, block.mlp_out) else 0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def forward(self, embedded: torch.Tensor, memory: SequenceFeatures, cache: DecoderCache | None = None) -> torch.Tensor:
        """States ``(B, T, width)`` of embedded targets ``(B, T, width)`` (positions after
        ``cache.length`` with a cache, which is extended in place) attending to ``memory``."""
        start = cache.length if cache is not None else 0
        end = start + embedded.shape[1]
        if end > self.max_length:
            raise ConfigError(f"target of {end} tokens is longer than the backbone's max_target_length {self.max_length}")
        x = self.embedding_dropout(embedded + self.position_embedding[start:end])
        memory_mask = None if memory.mask is None else memory.mask[:, None, None, :]
        if cache is None:
            for block in self.blocks:
                x, _ = block(x, block.memory_kv(memory.states), memory_mask)
            return self.norm(x)
        if not cache.cross_kv:
            cache.cross_kv = [block.memory_kv(memory.states) for block in self.blocks]
        pasts = cache.self_kv or [None] * len(self.blocks)
        cache.self_kv = []
        for block, memory_kv, past in zip(self.blocks, cache.cross_kv, pasts):
            x, kv = block(x, memory_kv, memory_mask, past)
            cache.self_kv.append(kv)
        return self.norm(x)


class Seq2SeqTransformer(SequenceBackbone):
    """An encoder-decoder Transformer (BART's shape, pre-LN): a bidirectional
    :class:`~ptft.backbones.text.TextTransformer` encoder (``encoder``) and a
    :class:`TransformerDecoder` (``decoder``: :class:`DecoderBlock` s with causal self-attention,
    cross-attention and an MLP, its own learned positions and final LayerNorm); its weights are the
    ``encoder.*`` and ``decoder.*`` entries of an export. The decoder reads the encoder's token embedding, and
    :meth:`logits` projects with it (tied output). Attention runs on ``scaled_dot_product_attention``;
    source padding is masked in the encoder and in cross-attention; targets are right-padded, so the
    causal mask keeps padding out of every real position. :meth:`decode` takes a
    :class:`DecoderCache` for incremental generation. With ``copy_attention``, the next token can
    also be copied from the source (:class:`~ptft.backbones.copy_attention.CopyAttention`, held as
    ``decoder.copy_attention``); :meth:`output_logits` gives the next-token scores either way. As a
    sequence backbone, ``forward_features`` gives the encoder's states (for classification from a
    seq2seq model).

    Args:
        vocab_size: rows of the shared token embedding (at least the tokenizer's vocabulary).
        max_source_length: longest source sequence (encoder positions).
        max_target_length: longest target sequence (decoder positions).
        encoder_depth: encoder blocks.
        decoder_depth: decoder blocks.
        width: token dimension.
        heads: attention heads (``width`` must be divisible by it).
        mlp_ratio: hidden size of the MLPs relative to ``width``.
        pool: pooling of the encoder states for classification (``cls``, ``mean``, ``last``).
        pad_id: id of the padding token.
        dropout: dropout on embeddings, in the blocks and on pooled features.
        attention_dropout: dropout on the attention weights.
        bias: biases in the Linear layers and LayerNorms (``False``: none).
        scaled_residual_init: GPT-2's residual-projection init (std ``0.02 / sqrt(2 * depth)``) in both stacks.
        copy_attention: mix copying a source token into the output distribution (pointer-generator).
            A fine-tuning option: a model pretrained without it gains a freshly initialised one.
    """

    input_kind = "text"
    fine_tuning_options = ("pool", "dropout", "attention_dropout", "copy_attention")

    def __init__(
        self,
        vocab_size: int = 8192,
        max_source_length: int = 128,
        max_target_length: int = 128,
        encoder_depth: int = 4,
        decoder_depth: int = 4,
        width: int = 256,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        pool: str = "mean",
        pad_id: int = 0,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        bias: bool = True,
        scaled_residual_init: bool = False,
        copy_attention: bool = False,
    ) -> None:
        super().__init__()
        if max_target_length < 1 or decoder_depth < 1:
            raise ConfigError(f"max_target_length and decoder_depth must be >= 1, got {max_target_length} and {decoder_depth}")
        self.encoder = TextTransformer(vocab_size, max_source_length, encoder_depth, width, heads, mlp_ratio, causal=False, pool=pool,
                                       pad_id=pad_id, dropout=dropout, attention_dropout=attention_dropout, bias=bias,
                                       scaled_residual_init=scaled_residual_init)
        self.pool_kind, self.pad_id, self.vocab_size = self.encoder.pool_kind, pad_id, vocab_size
        self.max_target_length = max_target_length
        self.decoder = TransformerDecoder(max_target_length, decoder_depth, width, heads, mlp_ratio, dropout, attention_dropout,
                                          bias, scaled_residual_init)
        if copy_attention:
            self.decoder.copy_attention = CopyAttention(width)
        self.dropout = self.encoder.dropout
        self.out_dim = width

    @property
    def token_embedding(self) -> nn.Embedding:
        """The token embedding the encoder, the decoder and the output projection share."""
        return self.encoder.token_embedding

    def check_data(self, spec: DataSpec) -> None:
        """Raise a ConfigError unless the data's tokens and lengths fit (the encoder checks the source side)."""
        self.encoder.check_data(spec)
        target = getattr(spec, "max_target_length", None)
        if target is not None and target > self.max_target_length:
            raise ConfigError(f"data.max_target_length {target} is longer than the backbone's max_target_length {self.max_target_length}")

    def encode(self, source: torch.Tensor) -> SequenceFeatures:
        """Encoder states ``(B, S, width)`` of right-padded source ids ``(B, S)`` and their padding mask."""
        return self.encoder.forward_features(source)

    def forward_features(self, source: torch.Tensor) -> SequenceFeatures:
        return self.encode(source)

    def decode(self, target: torch.Tensor, memory: SequenceFeatures, cache: DecoderCache | None = None) -> torch.Tensor:
        """Decoder states ``(B, T, width)`` of target ids ``(B, T)`` (teacher forcing: the shifted
        targets) attending to the encoder output ``memory``. With ``cache``, ``target`` holds only the
        positions after ``cache.length`` and the cache is extended in place."""
        return self.decoder(self.token_embedding(target), memory, cache)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of decoder states, through the shared token embedding (tied output)."""
        return states @ self.token_embedding.weight.T

    def output_logits(self, states: torch.Tensor, memory: SequenceFeatures, source: torch.Tensor) -> torch.Tensor:
        """Next-token scores ``(B, T, vocab)`` of decoder states ``(B, T, width)`` that read ``memory``,
        the encoder output of ``source`` ``(B, S)``: the :meth:`logits`, or with copy attention the
        log-probabilities of generating or copying (either way, ``log_softmax`` of them gives the
        log-probabilities, and cross-entropy takes them as logits)."""
        logits = self.logits(states)
        copy = self.decoder.copy_attention
        return logits if copy is None else copy(states, memory, source, logits)

    def teacher_forced_logits(self, source: torch.Tensor, decoder_input: torch.Tensor) -> torch.Tensor:
        """Next-token scores (:meth:`output_logits`) ``(B, T, vocab)`` at every position of
        ``decoder_input`` ``(B, T)`` (a target without its last token), reading right-padded ``source`` ``(B, S)``."""
        memory = self.encode(source)
        return self.output_logits(self.decode(decoder_input, memory), memory, source)

    def adapt_state_dict(self, state: dict[str, torch.Tensor], source_spec: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Weights of a model with or without copy attention, for this one: its own (initial) copy
        attention where the source had none; none where this model has none (with a warning when
        trained copy-attention weights are left out)."""
        prefix = "decoder.copy_attention."
        kept = {k: v for k, v in state.items() if not k.startswith(prefix)}
        if self.decoder.copy_attention is None:
            if len(kept) < len(state):
                warnings.warn("the pretrained weights' copy attention is left out: this Seq2SeqTransformer has copy_attention: false "
                              "(set it to true, e.g. model.backbone_overrides={copy_attention: true}, to keep it)", stacklevel=2)
            return kept
        own = {k: v for k, v in self.state_dict().items() if k.startswith(prefix)}
        return {**kept, **own, **{k: v for k, v in state.items() if k.startswith(prefix)}}

    def compile_regions(self) -> list[nn.Module]:
        """The encoder's regions and each decoder block (what ``decode`` calls through ``__call__``)."""
        return [*self.encoder.compile_regions(), *self.decoder.blocks]

    def layer_groups(self) -> list[list[str]]:
        """Shared and position embeddings, each encoder block, the encoder norm, each decoder block,
        the decoder norm (with the copy attention): input first, for layer-wise learning-rate decay."""
        encoder = [[f"encoder.{n}" for n in group] for group in self.encoder.layer_groups()]
        blocks = [[f"decoder.blocks.{i}.{n}" for n, _ in block.named_parameters()] for i, block in enumerate(self.decoder.blocks)]
        norm = [f"decoder.{n}" for n, _ in self.decoder.named_parameters() if n.startswith(("norm.", "copy_attention."))]
        return [[*encoder[0], "decoder.position_embedding"], *encoder[1:], *blocks, norm]
