"""Seq2SeqTransformer: decoder causality, source padding, the KV cache, tied output, layer groups."""

import pytest
import torch

from ptft.backbones import Seq2SeqTransformer, TextTransformer
from ptft.backbones.seq2seq import DecoderCache
from ptft.errors import ConfigError

PAD = 0


def model(**kw):
    torch.manual_seed(0)
    args = {"vocab_size": 40, "max_source_length": 12, "max_target_length": 10, "encoder_depth": 2, "decoder_depth": 2,
            "width": 32, "heads": 4, "dropout": 0.0, **kw}
    return Seq2SeqTransformer(**args).double().eval()


def ids(*shape, seed=1):
    return torch.randint(6, 40, shape, generator=torch.Generator().manual_seed(seed))


def test_a_future_target_token_cannot_change_earlier_decoder_states():
    net, source, target = model(), ids(2, 7), ids(2, 9)
    memory = net.encode(source)
    changed = target.clone()
    changed[:, 5:] = ids(2, 4, seed=2)
    before, after = net.decode(target, memory), net.decode(changed, memory)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-12)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_source_padding_cannot_change_any_output():
    net, source, target = model(), ids(2, 6), ids(2, 5)
    padded = torch.cat([source, torch.full((2, 4), PAD)], dim=1)
    padded[1, 4:6] = PAD  # the second source is shorter: its own padding, then more
    short = padded[:, :6]
    memory, padded_memory = net.encode(short), net.encode(padded)
    assert torch.allclose(net.decode(target, memory), net.decode(target, padded_memory), atol=1e-12)
    assert torch.allclose(memory.states[0], padded_memory.states[0, :6], atol=1e-12)
    assert padded_memory.mask.sum(1).tolist() == [6, 4]


@pytest.mark.parametrize("prefill", [1, 4])
def test_decoding_with_the_kv_cache_equals_decoding_without_it(prefill):
    net, source, target = model(), ids(3, 8), ids(3, 10)
    memory = net.encode(source)
    full = net.decode(target, memory)
    cache = DecoderCache()
    steps = [net.decode(target[:, :prefill], memory, cache)]
    for position in range(prefill, 10):
        steps.append(net.decode(target[:, position:position + 1], memory, cache))
    assert cache.length == 10 and len(cache.self_kv) == len(cache.cross_kv) == 2
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-10)


def test_reordering_the_cache_keeps_the_chosen_rows():
    net, source, target = model(), ids(2, 8), ids(2, 6)
    memory = net.encode(source)
    cache = DecoderCache()
    net.decode(target[:, :5], memory, cache)
    cache.reorder(torch.tensor([1, 1, 0]))  # beam search: hypothesis 1 twice, then 0
    step = net.decode(target[[1, 1, 0], 5:6], net.encode(source[[1, 1, 0]]), cache)
    assert torch.allclose(step[:, 0], net.decode(target, memory)[[1, 1, 0], 5], atol=1e-10)


def test_logits_are_tied_to_the_shared_token_embedding():
    net = model()
    states = net.decode(ids(2, 4), net.encode(ids(2, 5)))
    assert net.logits(states).shape == (2, 4, 40)
    assert net.token_embedding is net.encoder.token_embedding
    assert [n for n, _ in net.named_parameters() if "token_embedding" in n] == ["encoder.token_embedding.weight"]
    with torch.no_grad():
        net.token_embedding.weight[7] = 0
    assert (net.logits(states)[..., 7] == 0).all()


def test_layer_groups_cover_every_parameter_once_encoder_first():
    net = model(encoder_depth=2, decoder_depth=3)
    groups = net.layer_groups()
    names = [n for group in groups for n in group]
    assert sorted(names) == sorted(n for n, _ in net.named_parameters()) and len(names) == len(set(names))
    assert len(groups) == 1 + 2 + 1 + 3 + 1  # embeddings, encoder blocks, encoder norm, decoder blocks, decoder norm
    assert "decoder.position_embedding" in groups[0] and all(n.startswith("decoder.blocks.2.") for n in groups[-2])
    assert {n.split(".")[0] for n in names} == {"encoder", "decoder"}  # an export holds the encoder and the decoder


def test_decoder_self_attention_and_mlp_have_an_encoder_blocks_names_and_shapes():
    """What makes BERT2BERT a plain copy: an MLM block's weights fit a decoder block but for cross-attention."""
    net, mlm = model(), TextTransformer(vocab_size=40, max_length=12, depth=2, width=32, heads=4)
    encoder_block = {k: v.shape for k, v in mlm.blocks[0].state_dict().items()}
    decoder_block = {k: v.shape for k, v in net.decoder.blocks[0].state_dict().items()}
    assert {k: decoder_block[k] for k in encoder_block} == encoder_block
    assert sorted(set(decoder_block) - set(encoder_block)) == [
        "cross_kv.bias", "cross_kv.weight", "cross_proj.bias", "cross_proj.weight", "cross_q.bias", "cross_q.weight",
        "norm_cross.bias", "norm_cross.weight"]


def test_spec_rebuilds_it_and_lengths_are_checked():
    net = model(bias=False)
    rebuilt = Seq2SeqTransformer(**net.spec()["init_args"])
    assert rebuilt.state_dict().keys() == net.state_dict().keys() and not any(k.endswith(".bias") for k in net.state_dict())
    with pytest.raises(ConfigError, match="target of 11 tokens is longer than the backbone's max_target_length 10"):
        net.decode(ids(1, 11), net.encode(ids(1, 3)))
    with pytest.raises(ConfigError, match="max_target_length and decoder_depth must be >= 1"):
        Seq2SeqTransformer(decoder_depth=0)
    assert net(ids(2, 5)).shape == (2, 32)  # pooled encoder features, as any sequence backbone
