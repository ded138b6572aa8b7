"""BERT2BERT: an encoder-decoder model warm-started from a bidirectional text encoder (a ptft
masked-LM checkpoint or export), as Rothe et al. (2020) start seq2seq models from BERT."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from ptft.backbones.seq2seq import Seq2SeqTransformer
from ptft.backbones.text import TextTransformer
from ptft.errors import ConfigError
from ptft.handoff import Pretrained, build_loaded, check_weights

TEXT_TRANSFORMER = f"{TextTransformer.__module__}.{TextTransformer.__qualname__}"
# init args a warm-started Seq2SeqTransformer takes over from the TextTransformer, by their names there
CROSS_ATTENTION = ("norm_cross", "cross_q", "cross_kv", "cross_proj")  # a DecoderBlock's own modules
FRESH = (*CROSS_ATTENTION, "copy_attention")  # what no encoder has: cross-attention, and copy attention when configured
# TextTransformer init args the Seq2SeqTransformer does not take: a warm start needs their defaults
ENCODER_ONLY_ARGS = ("token_types", "norm_eps", "activation")
SHARED_ARGS = ("vocab_size", "width", "heads", "mlp_ratio", "pool", "pad_id", "dropout", "attention_dropout", "bias")


@dataclass(frozen=True)
class WarmStartReport:
    """What a warm start copied, as ``(seq2seq key, encoder key)`` pairs, and the seq2seq keys
    that start fresh (the decoder's cross-attention)."""

    source: str
    copied: list[tuple[str, str]]
    new: list[str]

    def __str__(self) -> str:
        decoder = [pair for pair in self.copied if pair[0].startswith("decoder.")]
        lines = [f"BERT2BERT warm start from {self.source}: {len(self.copied)} tensors copied "
                 f"({len(self.copied) - len(decoder)} into the encoder, {len(decoder)} into the decoder), {len(self.new)} new"]
        lines += [f"  copied {target} <- {origin}" for target, origin in decoder]
        lines += [f"  new    {key}" for key in self.new]
        return "\n".join(lines)


def is_text_encoder(pretrained: Pretrained) -> bool:
    """Whether ``pretrained``'s backbone is a TextTransformer (an MLM's encoder, say)."""
    return pretrained.specs.get("backbone", {}).get("class_path") == TEXT_TRANSFORMER


def seq2seq_from_text_encoder(pretrained: Pretrained, configured: Seq2SeqTransformer | None = None) -> tuple[Seq2SeqTransformer, WarmStartReport]:
    """A ``Seq2SeqTransformer`` initialised from ``pretrained``'s bidirectional ``TextTransformer``:
    the encoder is a copy of it; each decoder block's self-attention, feed-forward layers and norms
    copy the encoder block of the same depth, the decoder's positions and final norm copy the
    encoder's, and the token embedding (shared by both stacks and the output) is the encoder's;
    only the cross-attention (and the copy attention of a ``configured`` model that has one) starts
    fresh. ``configured`` (None: the encoder's shape, a decoder as deep, both as long) must have an
    encoder of exactly the pretrained shape and a decoder no deeper and no longer. Everything the
    model holds is either copied or cross- or copy attention, or this fails."""
    spec, state, source = pretrained.specs["backbone"], pretrained.states["backbone"], pretrained.source
    encoder = build_loaded(spec, state, source)
    if encoder.causal:
        raise ConfigError(f"model.pretrained {source} holds a causal TextTransformer: BERT2BERT starts from a bidirectional (masked-LM) encoder")
    defaults = {name: p.default for name, p in inspect.signature(TextTransformer).parameters.items()}
    args = {**defaults, **spec.get("init_args", {})}
    if args["norm_position"] != "pre":
        raise ConfigError(f"model.pretrained {source} holds a post-LN TextTransformer (norm_position: {args['norm_position']}, BERT's): "
                          "BERT2BERT's decoder blocks are pre-LN, so it starts only from a pre-LN encoder")
    unsupported = [f"{name}: {args[name]}" for name in ENCODER_ONLY_ARGS if args[name] != defaults[name]]
    if unsupported:
        raise ConfigError(f"model.pretrained {source}: BERT2BERT's Seq2SeqTransformer has no {', '.join(unsupported)} (it takes ptft's defaults)")
    if configured is None:
        configured = Seq2SeqTransformer(max_source_length=args["max_length"], max_target_length=args["max_length"], encoder_depth=args["depth"],
                                        decoder_depth=args["depth"], **{name: args[name] for name in SHARED_ARGS})
    check_weights(configured.encoder, state, source, "encoder")
    decoder_depth, target_length = len(configured.decoder.blocks), configured.max_target_length
    if decoder_depth > len(encoder.blocks) or target_length > encoder.max_length:
        raise ConfigError(f"model.backbone: a decoder of {decoder_depth} blocks and max_target_length {target_length} cannot start from "
                          f"{source}'s encoder of {len(encoder.blocks)} blocks and max_length {encoder.max_length}")
    copies: dict[str, tuple[str, torch.Tensor]] = {f"encoder.{key}": (key, value) for key, value in state.items()}
    copies["decoder.position_embedding"] = ("position_embedding", state["position_embedding"][:target_length])
    for key in configured.decoder.norm.state_dict():
        copies[f"decoder.norm.{key}"] = (f"norm.{key}", state[f"norm.{key}"])
    for i, block in enumerate(configured.decoder.blocks):
        for key in block.state_dict():
            if f"blocks.{i}.{key}" in state:
                copies[f"decoder.blocks.{i}.{key}"] = (f"blocks.{i}.{key}", state[f"blocks.{i}.{key}"])
    weights = configured.state_dict()
    new = [key for key in weights if key not in copies]
    unexpected = [key for key in new if not any(f".{name}." in key for name in FRESH)]
    if unexpected:
        raise ConfigError(f"BERT2BERT from {source}: {', '.join(unexpected)} would start fresh, but only the cross- and copy attention may")
    configured.load_state_dict({**weights, **{key: value for key, (_, value) in copies.items()}}, strict=True)
    return configured, WarmStartReport(source, [(key, origin) for key, (origin, _) in copies.items()], new)
