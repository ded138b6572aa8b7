"""Seq2SeqTransformer: decoder causality, source padding, the KV cache, tied output, copy attention, layer groups."""

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


@pytest.mark.parametrize("copy_attention", [False, True])
def test_source_padding_cannot_change_any_output(copy_attention):
    net, source, target = model(copy_attention=copy_attention), ids(2, 6), ids(2, 5)
    padded = torch.cat([source, torch.full((2, 4), PAD)], dim=1)
    padded[1, 4:6] = PAD  # the second source is shorter: its own padding, then more
    short = padded[:, :6]
    memory, padded_memory = net.encode(short), net.encode(padded)
    assert torch.allclose(net.decode(target, memory), net.decode(target, padded_memory), atol=1e-12)
    assert torch.allclose(net.teacher_forced_logits(short, target), net.teacher_forced_logits(padded, target), atol=1e-12)
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


@pytest.mark.parametrize("copy_attention", [False, True])
def test_layer_groups_cover_every_parameter_once_encoder_first(copy_attention):
    net = model(encoder_depth=2, decoder_depth=3, copy_attention=copy_attention)
    groups = net.layer_groups()
    names = [n for group in groups for n in group]
    assert sorted(names) == sorted(n for n, _ in net.named_parameters()) and len(names) == len(set(names))
    assert len(groups) == 1 + 2 + 1 + 3 + 1  # embeddings, encoder blocks, encoder norm, decoder blocks, decoder norm
    assert "decoder.position_embedding" in groups[0] and all(n.startswith("decoder.blocks.2.") for n in groups[-2])
    assert {n.split(".")[0] for n in names} == {"encoder", "decoder"}  # an export holds the encoder and the decoder


def test_copy_attention_mixes_generating_with_copying_source_tokens():
    net, source, target = model(copy_attention=True), ids(2, 6), ids(2, 5)
    source[1, 4:] = PAD
    memory = net.encode(source)
    states = net.decode(target, memory)
    scores = net.output_logits(states, memory, source)
    assert scores.shape == (2, 5, 40) and torch.allclose(scores.exp().sum(-1), torch.ones(2, 5, dtype=torch.float32))
    gate = net.decoder.copy_attention.gate
    with torch.no_grad():
        gate.weight.zero_()
        gate.bias.fill_(40.0)  # always generate: the tied logits alone
        generating = net.output_logits(states, memory, source)
        gate.bias.fill_(-40.0)  # always copy: all the probability on the source's (real) tokens
        copying = net.output_logits(states, memory, source).exp()
    assert torch.allclose(generating, net.logits(states).float().log_softmax(-1), atol=1e-6)
    for row in range(2):
        real = source[row][source[row] != PAD].unique()
        assert torch.allclose(copying[row][:, real].sum(-1), torch.ones(5), atol=1e-6)
        assert copying[row][:, PAD].max() < 1e-12  # only the e^-40 left to generating
    repeated = source.clone()
    repeated[0, :3] = repeated[0, 3]  # one token at 4 positions: it gets their four attention weights
    with torch.no_grad():
        copied = net.output_logits(net.decode(target, net.encode(repeated)), net.encode(repeated), repeated).exp()
    assert (copied[0, :, repeated[0, 3]] > copied[0, :, repeated[0, 4]]).all()


def test_copy_attention_is_a_fine_tuning_option_added_fresh_or_dropped():
    plain = model()
    with_copy = plain.with_fine_tuning_options({"copy_attention": True})
    assert with_copy.decoder.copy_attention is not None and with_copy.spec()["init_args"]["copy_attention"] is True
    kept = {k: v for k, v in with_copy.state_dict().items() if "copy_attention" not in k}
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in kept.items()) and kept.keys() == plain.state_dict().keys()
    with pytest.warns(UserWarning, match="copy attention is left out: this Seq2SeqTransformer has copy_attention: false"):
        dropped = with_copy.with_fine_tuning_options({"copy_attention": False})
    assert dropped.decoder.copy_attention is None and dropped.state_dict().keys() == plain.state_dict().keys()


def name_in_filler(names, rows, generator):
    """Sources of 6 filler ids (3-19) with one of ``names`` at a random position; targets ``<start> name <end>``."""
    source = torch.randint(3, 20, (rows, 6), generator=generator)
    name = names[torch.randint(0, len(names), (rows,), generator=generator)]
    source[torch.arange(rows), torch.randint(0, 6, (rows,), generator=generator)] = name
    return source, torch.stack([torch.ones(rows, dtype=torch.long), name, torch.full((rows,), 2)], 1)


@pytest.mark.parametrize("copy_attention", [False, True])
def test_copy_attention_writes_source_tokens_never_seen_as_targets(copy_attention):
    """Trained to write the name in its source, for names 20-39 only: with copy attention the model
    also writes names 40-59, which it never saw as targets; without it, it never does."""
    torch.manual_seed(0)
    net = Seq2SeqTransformer(vocab_size=60, max_source_length=8, max_target_length=4, encoder_depth=1, decoder_depth=1, width=32,
                             heads=2, dropout=0.0, copy_attention=copy_attention)
    optimizer, generator = torch.optim.AdamW(net.parameters(), lr=3e-3), torch.Generator().manual_seed(0)
    for _ in range(150):
        source, target = name_in_filler(torch.arange(20, 40), 32, generator)
        loss = torch.nn.functional.cross_entropy(net.teacher_forced_logits(source, target[:, :-1]).flatten(0, 1), target[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    written = {}
    for label, names in (("seen", torch.arange(20, 40)), ("unseen", torch.arange(40, 60))):
        source, target = name_in_filler(names, 200, torch.Generator().manual_seed(1))
        with torch.no_grad():
            first = net.teacher_forced_logits(source, target[:, :1])[:, 0].argmax(-1)
        written[label] = (first == target[:, 1]).float().mean().item()
    assert written["seen"] > 0.8  # both learn the task (plain 0.84, copy 1.0)
    assert written["unseen"] > 0.95 if copy_attention else written["unseen"] == 0.0


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
