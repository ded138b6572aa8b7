"""Hugging Face GPT-2 <-> ptft :class:`~ptft.backbones.text.TextTransformer`, causal and pre-LN.

GPT-2's ``Conv1D`` layers hold their weight as ``(in, out)``, the transpose of an ``nn.Linear``'s.
The mapping, per block ``i`` (``h.i.`` in GPT-2): ``ln_1`` -> ``blocks.i.norm1``, ``attn.c_attn``
(q, k, v already fused in ptft's order) -> ``qkv``, ``attn.c_proj`` -> ``proj``, ``ln_2`` ->
``norm2``, ``mlp.c_fc`` -> ``mlp.0``, ``mlp.c_proj`` -> ``mlp.3``; ``wte``, ``wpe``, ``ln_f`` ->
``token_embedding``, ``position_embedding``, ``norm``. The LM head is tied to ``wte``
(ptft's language-model heads tie theirs to ``token_embedding`` too).

Padding: GPT-2 has no padding token, and a TextTransformer masks the tokens whose id is its
``pad_id`` out of attention. Taking ``<|endoftext|>`` as the padding id (as Hugging Face users often
do, with an attention mask of their own) would hide the real end-of-text tokens inside packed
blocks from attention, so an import sets ``pad_id`` to the config's ``pad_token_id`` only when that
is a token of its own (neither ``eos_token_id`` nor ``bos_token_id``), else to -1, an id no token
has: nothing is ever masked and the states equal GPT-2's for any ids. Language-model training runs
without padding masks anyway (``hidden_states(padding=False)``); a task that pads batches needs a
tokenizer with a padding token of its own, and the backbone's ``pad_id`` set to it.

The forward passes agree in evaluation mode; GPT-2's separate ``embd_pdrop`` is not kept
(ptft's one ``dropout`` is ``resid_pdrop``).
"""

from __future__ import annotations

import re

import torch

from ptft.backbones.text import TextTransformer
from ptft.errors import ConfigError
from ptft.interop.hf_text import ACTIVATIONS_TO_HF, activation_from_hf, mlp_ratio, pad_token_id, setting, single_norm_eps, tensor, text_args, weight_and_bias
from ptft.interop.source_weights import SourceWeights

TEXT_TRANSFORMER = f"{TextTransformer.__module__}.{TextTransformer.__qualname__}"
# transformers' GPT2Config defaults, which it also takes for a key config.json lacks
GPT2_DEFAULTS = {
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
    "activation_function": "gelu_new", "resid_pdrop": 0.1, "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
    "add_cross_attention": False, "pad_token_id": None, "bos_token_id": 50256, "eos_token_id": 50256,
}


def refuse_what_ptft_cannot_compute(config: dict, source: str) -> None:
    """``reorder_and_upcast_attn`` is accepted: it changes only the order and precision of the
    attention scores' scaling, nothing in float32."""
    if not setting(config, GPT2_DEFAULTS, "scale_attn_weights"):
        raise ConfigError(f"{source}: scale_attn_weights false: ptft's attention always scales by 1/sqrt(head size)")
    if setting(config, GPT2_DEFAULTS, "scale_attn_by_inverse_layer_idx"):
        raise ConfigError(f"{source}: scale_attn_by_inverse_layer_idx true: ptft's attention does not scale by the layer index")
    if setting(config, GPT2_DEFAULTS, "add_cross_attention"):
        raise ConfigError(f"{source}: add_cross_attention true: a GPT-2 with cross-attention has no ptft TextTransformer counterpart")


def gpt2_pad_id(config: dict) -> int:
    """The config's ``pad_token_id`` when it is a token of its own, else -1 (no token is padding)."""
    pad = setting(config, GPT2_DEFAULTS, "pad_token_id")
    if pad is None or pad in (setting(config, GPT2_DEFAULTS, "eos_token_id"), setting(config, GPT2_DEFAULTS, "bos_token_id")):
        return -1
    return pad


def import_gpt2(config: dict, weights: SourceWeights) -> tuple[dict, dict[str, torch.Tensor]]:
    """The TextTransformer spec and state dict of a Hugging Face GPT2Model or GPT2LMHeadModel (the
    ``transformer.`` prefix is found from the keys): causal, pre-LN, pooling ``last``, ``pad_id``
    as the module docstring says. An ``lm_head.weight`` is dropped when it equals ``wte`` (tied),
    refused otherwise; the attention-mask buffers of older checkpoints are dropped."""
    source = weights.source
    refuse_what_ptft_cannot_compute(config, source)
    prefix = "transformer." if "transformer.wte.weight" in weights else ""
    width, depth = setting(config, GPT2_DEFAULTS, "n_embd"), setting(config, GPT2_DEFAULTS, "n_layer")
    inner = setting(config, GPT2_DEFAULTS, "n_inner")
    init_args = {
        "vocab_size": setting(config, GPT2_DEFAULTS, "vocab_size"),
        "max_length": setting(config, GPT2_DEFAULTS, "n_positions"),
        "depth": depth,
        "width": width,
        "heads": setting(config, GPT2_DEFAULTS, "n_head"),
        "mlp_ratio": 4.0 if inner is None else mlp_ratio(inner, width, "n_inner", source),
        "causal": True,
        "pool": "last",
        "pad_id": gpt2_pad_id(config),
        "dropout": setting(config, GPT2_DEFAULTS, "resid_pdrop"),
        "attention_dropout": setting(config, GPT2_DEFAULTS, "attn_pdrop"),
        "bias": True,
        "norm_position": "pre",
        "token_types": 0,
        "norm_eps": setting(config, GPT2_DEFAULTS, "layer_norm_epsilon"),
        "activation": activation_from_hf(setting(config, GPT2_DEFAULTS, "activation_function"), "activation_function", source),
    }
    take = lambda key: weights.take(prefix + key)  # noqa: E731
    wte = take("wte.weight")
    state = {"token_embedding.weight": wte, "position_embedding": take("wpe.weight"),
             "norm.weight": take("ln_f.weight"), "norm.bias": take("ln_f.bias")}
    for i in range(depth):
        layer, block = f"h.{i}.", f"blocks.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            state[f"{block}{ours}.weight"], state[f"{block}{ours}.bias"] = take(f"{layer}{theirs}.weight"), take(f"{layer}{theirs}.bias")
        for ours, theirs in (("qkv", "attn.c_attn"), ("proj", "attn.c_proj"), ("mlp.0", "mlp.c_fc"), ("mlp.3", "mlp.c_proj")):
            state[f"{block}{ours}.weight"] = take(f"{layer}{theirs}.weight").t().contiguous()  # Conv1D (in, out) -> Linear (out, in)
            state[f"{block}{ours}.bias"] = take(f"{layer}{theirs}.bias")
    if "lm_head.weight" in weights:
        head = weights.state["lm_head.weight"]
        if head.shape != wte.shape or not torch.equal(head, wte):
            raise ConfigError(f"{source}: lm_head.weight is not tied to wte: ptft's language-model heads tie their weights "
                              "to the token embedding and have no place for a separate output matrix")
        weights.drop(r"lm_head\.weight$")  # the tied copy of wte
    weights.drop(re.escape(prefix) + r"h\.\d+\.attn\.(bias|masked_bias)$")  # causal-mask buffers, not weights
    return {"class_path": TEXT_TRANSFORMER, "init_args": init_args}, state


def export_gpt2(backbone: TextTransformer) -> tuple[dict, dict[str, torch.Tensor]]:
    """A Hugging Face ``config.json`` (a ``GPT2Model``) and the GPT2Model state dict of a causal,
    pre-LN TextTransformer, which GPT-2 computes exactly (in evaluation mode).

    * Biases of a ``bias: false`` TextTransformer (nanoGPT's) are written as zeros.
    * A token-type table's row 0, which ptft adds to every token, is folded into ``wpe``.
    * ``pad_token_id`` is the backbone's ``pad_id`` when that is a token's id; ``bos_token_id`` and
      ``eos_token_id`` are left unset (they belong to the tokenizer, which this does not write).

    A post-LN or bidirectional TextTransformer, or one whose LayerNorms use different epsilons
    (ptft's defaults, ``norm_eps`` unset: GPT-2 has one ``layer_norm_epsilon``), has no exact GPT-2
    counterpart and is refused with a ConfigError saying why.
    """
    args = text_args(backbone, "Hugging Face GPT-2")
    if args["norm_position"] != "pre":
        raise ConfigError(f"Hugging Face GPT-2 is pre-LN; this TextTransformer is {args['norm_position']}-LN (norm_position: "
                          f"{args['norm_position']}), which GPT-2 cannot compute; export it with --format ptft (a bidirectional post-LN one also as BERT)")
    if not backbone.causal:
        raise ConfigError("Hugging Face GPT-2 is causal; this TextTransformer is bidirectional (causal: false), which GPT2Model "
                          "cannot compute; export it with --format ptft")
    eps = single_norm_eps(backbone, "Hugging Face GPT-2")
    width, blocks = backbone.out_dim, backbone.blocks
    positions = tensor(backbone.position_embedding)
    if backbone.token_type_embedding is not None:
        positions = positions + backbone.token_type_embedding[0].detach()
    config = {
        "model_type": "gpt2",
        "architectures": ["GPT2Model"],
        "vocab_size": backbone.vocab_size,
        "n_positions": backbone.max_length,
        "n_embd": width,
        "n_layer": len(blocks),
        "n_head": blocks[0].heads if len(blocks) else args["heads"],
        "n_inner": blocks[0].mlp_out.in_features if len(blocks) else int(width * args["mlp_ratio"]),
        "activation_function": ACTIVATIONS_TO_HF[args["activation"]],
        "resid_pdrop": args["dropout"],
        "embd_pdrop": args["dropout"],
        "attn_pdrop": args["attention_dropout"],
        "layer_norm_epsilon": eps,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        "pad_token_id": pad_token_id(backbone),
        "bos_token_id": None,
        "eos_token_id": None,
    }
    state = {"wte.weight": tensor(backbone.token_embedding.weight), "wpe.weight": positions.contiguous()}
    state["ln_f.weight"], state["ln_f.bias"] = weight_and_bias(backbone.norm)
    for i, block in enumerate(blocks):
        layer = f"h.{i}."
        for theirs, module in (("ln_1", block.norm1), ("ln_2", block.norm2)):
            state[f"{layer}{theirs}.weight"], state[f"{layer}{theirs}.bias"] = weight_and_bias(module)
        for theirs, module in (("attn.c_attn", block.qkv), ("attn.c_proj", block.proj), ("mlp.c_fc", block.mlp[0]), ("mlp.c_proj", block.mlp_out)):
            weight, bias = weight_and_bias(module)
            state[f"{layer}{theirs}.weight"], state[f"{layer}{theirs}.bias"] = weight.t().contiguous(), bias  # Linear -> Conv1D (in, out)
    return config, state
