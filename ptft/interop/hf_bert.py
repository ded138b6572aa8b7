"""Hugging Face BERT <-> ptft :class:`~ptft.backbones.text.TextTransformer` with
``norm_position: post`` (BERT's post-LN blocks, LayerNorm on the embeddings, no final norm).

The mapping, per block ``i`` (``encoder.layer.i.`` in BERT):

* ``attention.self.{query,key,value}`` -> ``blocks.i.qkv`` (concatenated in that order),
  ``attention.output.dense`` -> ``proj``, ``attention.output.LayerNorm`` -> ``norm1``;
* ``intermediate.dense`` -> ``mlp.0``, ``output.dense`` -> ``mlp.3``, ``output.LayerNorm`` -> ``norm2``;
* ``embeddings.{word,position,token_type}_embeddings`` -> ``token_embedding``,
  ``position_embedding``, ``token_type_embedding``; ``embeddings.LayerNorm`` -> ``embedding_norm``.

The forward passes agree in evaluation mode. In training the dropouts sit in slightly different
places: ptft's MLP also drops out after its activation, which BERT's does not.
"""

from __future__ import annotations

import re

import torch

from ptft.backbones.text import TextTransformer
from ptft.errors import ConfigError
from ptft.interop.hf_text import ACTIVATIONS_TO_HF, activation_from_hf, mlp_ratio, pad_token_id, setting, single_norm_eps, tensor, text_args, weight_and_bias
from ptft.interop.source_weights import SourceWeights

TEXT_TRANSFORMER = f"{TextTransformer.__module__}.{TextTransformer.__qualname__}"
# transformers' BertConfig defaults, which it also takes for a key config.json lacks
BERT_DEFAULTS = {
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
    "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
    "is_decoder": False, "add_cross_attention": False,
}
# on purpose not imported: the pooler (BertModel's tanh layer over [CLS]) and buffers of position /
# type ids inside the BERT model; the pre-training heads (BertForMaskedLM, BertForPreTraining:
# ``cls.*``) and a task head (``classifier.*``) next to it
DROPPED = ("pooler.", "embeddings.position_ids", "embeddings.token_type_ids")
HEADS_DROPPED = ("cls.", "classifier.")


def refuse_what_ptft_cannot_compute(config: dict, source: str) -> None:
    position_type = setting(config, BERT_DEFAULTS, "position_embedding_type")
    if position_type != "absolute":
        raise ConfigError(f"{source}: position_embedding_type {position_type!r}: ptft's TextTransformer has only absolute "
                          "(learned) position embeddings")
    if setting(config, BERT_DEFAULTS, "is_decoder") or setting(config, BERT_DEFAULTS, "add_cross_attention"):
        raise ConfigError(f"{source}: is_decoder / add_cross_attention: a BERT decoder (causal, cross-attention); ptft imports BERT encoders")


def import_bert(config: dict, weights: SourceWeights) -> tuple[dict, dict[str, torch.Tensor]]:
    """The TextTransformer spec and state dict of a Hugging Face BertModel or BertForMaskedLM
    (or BertForPreTraining, BertForSequenceClassification: their heads are dropped); the ``bert.``
    prefix of a model with a head is found from the keys. Pooling is ``cls``, ``pad_id`` BERT's
    ``pad_token_id`` (-1, no token's id, when it has none)."""
    source = weights.source
    refuse_what_ptft_cannot_compute(config, source)
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    width, depth = setting(config, BERT_DEFAULTS, "hidden_size"), setting(config, BERT_DEFAULTS, "num_hidden_layers")
    pad = setting(config, BERT_DEFAULTS, "pad_token_id")
    token_types = setting(config, BERT_DEFAULTS, "type_vocab_size")
    init_args = {
        "vocab_size": setting(config, BERT_DEFAULTS, "vocab_size"),
        "max_length": setting(config, BERT_DEFAULTS, "max_position_embeddings"),
        "depth": depth,
        "width": width,
        "heads": setting(config, BERT_DEFAULTS, "num_attention_heads"),
        "mlp_ratio": mlp_ratio(setting(config, BERT_DEFAULTS, "intermediate_size"), width, "intermediate_size", source),
        "causal": False,
        "pool": "cls",
        "pad_id": pad if pad is not None else -1,
        "dropout": setting(config, BERT_DEFAULTS, "hidden_dropout_prob"),
        "attention_dropout": setting(config, BERT_DEFAULTS, "attention_probs_dropout_prob"),
        "bias": True,
        "norm_position": "post",
        "token_types": token_types,
        "norm_eps": setting(config, BERT_DEFAULTS, "layer_norm_eps"),
        "activation": activation_from_hf(setting(config, BERT_DEFAULTS, "hidden_act"), "hidden_act", source),
    }
    take = lambda key: weights.take(prefix + key)  # noqa: E731
    state = {
        "token_embedding.weight": take("embeddings.word_embeddings.weight"),
        "position_embedding": take("embeddings.position_embeddings.weight"),
        "embedding_norm.weight": take("embeddings.LayerNorm.weight"),
        "embedding_norm.bias": take("embeddings.LayerNorm.bias"),
    }
    if token_types:
        state["token_type_embedding"] = take("embeddings.token_type_embeddings.weight")
    pairs = {"proj": "attention.output.dense", "norm1": "attention.output.LayerNorm", "mlp.0": "intermediate.dense",
             "mlp.3": "output.dense", "norm2": "output.LayerNorm"}
    for i in range(depth):
        layer = f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            state[f"blocks.{i}.qkv.{kind}"] = torch.cat([take(f"{layer}attention.self.{name}.{kind}") for name in ("query", "key", "value")])
            for ours, theirs in pairs.items():
                state[f"blocks.{i}.{ours}.{kind}"] = take(f"{layer}{theirs}.{kind}")
    for part in DROPPED:
        weights.drop(re.escape(prefix + part))
    for part in HEADS_DROPPED:
        weights.drop(re.escape(part))
    return {"class_path": TEXT_TRANSFORMER, "init_args": init_args}, state


def export_bert(backbone: TextTransformer) -> tuple[dict, dict[str, torch.Tensor]]:
    """A Hugging Face ``config.json`` (a ``BertModel``) and the BertModel state dict of a post-LN,
    bidirectional TextTransformer, which BERT computes exactly (in evaluation mode).

    * The pooler, which ptft has no counterpart of, is written as zeros (``pooler_output`` is all
      zeros, plainly untrained) so that ``AutoModel.from_pretrained`` finds every weight it expects
      rather than initialising one at random.
    * A TextTransformer without token types gets a one-row table of zeros (``type_vocab_size: 1``):
      BERT always adds a token-type row, and a zero row adds nothing.
    * Biases of a ``bias: false`` TextTransformer are written as zeros.

    A pre-LN or causal TextTransformer, or one whose LayerNorms use different epsilons, has no exact
    BERT counterpart and is refused with a ConfigError saying why.
    """
    args = text_args(backbone, "Hugging Face BERT")
    if args["norm_position"] != "post":
        raise ConfigError(f"Hugging Face BERT is post-LN; this TextTransformer is {args['norm_position']}-LN (norm_position: "
                          f"{args['norm_position']}), which BERT cannot compute; export it with --format ptft (a causal pre-LN one also as GPT-2)")
    if backbone.causal:
        raise ConfigError("Hugging Face BERT is bidirectional; this TextTransformer is causal (causal: true), which BertModel "
                          "cannot compute; export it with --format ptft")
    eps = single_norm_eps(backbone, "Hugging Face BERT")
    width, blocks = backbone.out_dim, backbone.blocks
    hidden = blocks[0].mlp_out.in_features if len(blocks) else int(width * args["mlp_ratio"])
    token_type = (tensor(backbone.token_type_embedding) if backbone.token_type_embedding is not None
                  else torch.zeros(1, width, dtype=backbone.position_embedding.dtype))
    config = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "vocab_size": backbone.vocab_size,
        "hidden_size": width,
        "num_hidden_layers": len(blocks),
        "num_attention_heads": blocks[0].heads if len(blocks) else args["heads"],
        "intermediate_size": hidden,
        "hidden_act": ACTIVATIONS_TO_HF[args["activation"]],
        "hidden_dropout_prob": args["dropout"],
        "attention_probs_dropout_prob": args["attention_dropout"],
        "max_position_embeddings": backbone.max_length,
        "type_vocab_size": token_type.shape[0],
        "layer_norm_eps": eps,
        "pad_token_id": pad_token_id(backbone),
        "position_embedding_type": "absolute",
        "is_decoder": False,
        "add_cross_attention": False,
    }
    norm_weight, norm_bias = weight_and_bias(backbone.embedding_norm)
    state = {
        "embeddings.word_embeddings.weight": tensor(backbone.token_embedding.weight),
        "embeddings.position_embeddings.weight": tensor(backbone.position_embedding),
        "embeddings.token_type_embeddings.weight": token_type,
        "embeddings.LayerNorm.weight": norm_weight,
        "embeddings.LayerNorm.bias": norm_bias,
        "pooler.dense.weight": torch.zeros(width, width, dtype=norm_weight.dtype),
        "pooler.dense.bias": torch.zeros(width, dtype=norm_weight.dtype),
    }
    for i, block in enumerate(blocks):
        layer = f"encoder.layer.{i}."
        qkv = weight_and_bias(block.qkv)
        for name, index in (("query", 0), ("key", 1), ("value", 2)):
            for kind, value in zip(("weight", "bias"), qkv):
                state[f"{layer}attention.self.{name}.{kind}"] = tensor(value.chunk(3)[index])
        for theirs, module in (("attention.output.dense", block.proj), ("attention.output.LayerNorm", block.norm1),
                               ("intermediate.dense", block.mlp[0]), ("output.dense", block.mlp_out), ("output.LayerNorm", block.norm2)):
            state[f"{layer}{theirs}.weight"], state[f"{layer}{theirs}.bias"] = weight_and_bias(module)
    return config, state
