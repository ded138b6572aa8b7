"""Seq2seq generation: greedy vs beam 1, the KV cache, length penalty, no-repeat n-grams."""

import math

import pytest
import torch

from ptft.backbones import Seq2SeqTransformer
from ptft.backbones.base import SequenceFeatures
from ptft.errors import ConfigError
from ptft.seq2seq_generation import GenerationSettings, _beam_search, _greedy, banned_tokens, generate

START, END = 1, 2


def model(copy_attention=False):
    torch.manual_seed(0)
    net = Seq2SeqTransformer(vocab_size=30, max_source_length=12, max_target_length=16, encoder_depth=1, decoder_depth=2,
                             width=32, heads=4, dropout=0.0, copy_attention=copy_attention).double().eval()
    with torch.no_grad():  # large random weights: outputs that differ between sources and run for several steps
        for parameter in net.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.5)
    return net


def sources():
    source = torch.randint(6, 30, (4, 9), generator=torch.Generator().manual_seed(3))
    source[1, 5:] = 0  # padded
    source[3, 2:] = 0
    return source


class TableModel(torch.nn.Module):
    """A 'model' whose next-token probabilities are a table of the prefix: greedy and beam search
    disagree on it, and the length penalty decides between a short and a long output."""

    A, B, C, D = 3, 4, 5, 6
    TABLE = {(): {A: 0.6, B: 0.4}, (A,): {C: 0.35, D: 0.35, END: 0.3}, (B,): {END: 0.95, C: 0.05},
             (A, C): {END: 1.0}, (A, D): {END: 1.0}, (B, C): {END: 1.0}}

    def encode(self, source):
        return SequenceFeatures(torch.zeros(len(source), 1, 1), None)

    def decode(self, tokens, memory, cache=None):
        rows = []
        for prefix in tokens[:, 1:].tolist():
            probabilities = torch.full((7,), 1e-9)
            for token, p in self.TABLE.get(tuple(prefix), {END: 1.0}).items():
                probabilities[token] = p
            rows.append(probabilities.log())
        return torch.stack(rows)[:, None, :]

    def output_logits(self, states, memory, source):
        return states


@pytest.mark.parametrize("copy_attention", [False, True])
def test_beam_search_with_one_beam_equals_greedy_decoding(copy_attention):
    net, source = model(copy_attention), sources()
    for size in (0, 2):
        settings = GenerationSettings(max_length=12, beam_size=1, no_repeat_ngram_size=size)
        greedy = _greedy(net, source, START, END, settings)
        assert _beam_search(net, source, START, END, settings) == greedy
        assert all(len(g) <= 12 for g in greedy) and len({tuple(g) for g in greedy}) > 1


def test_sampling_is_seeded_and_top_k_1_is_greedy_decoding():
    net, source = model(), sources()
    greedy = generate(net, source, START, END, GenerationSettings(max_length=12))
    assert generate(net, source, START, END, GenerationSettings(max_length=12, temperature=1.5, top_k=1), torch.Generator().manual_seed(3)) == greedy
    sampled = [generate(net, source, START, END, GenerationSettings(max_length=12, temperature=2.0), torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert sampled[0] == sampled[1] and sampled[0] != greedy
    with pytest.raises(ConfigError, match="sampling \\(temperature > 0\\) needs beam_size 1"):
        GenerationSettings(temperature=1.0, beam_size=2)


@pytest.mark.parametrize("beam_size,copy_attention", [(1, False), (3, False), (3, True)])
def test_generation_with_the_kv_cache_equals_generation_without_it(beam_size, copy_attention):
    net, source = model(copy_attention), sources()
    outputs = [generate(net, source, START, END, GenerationSettings(max_length=12, beam_size=beam_size, use_cache=cache))
               for cache in (True, False)]
    assert outputs[0] == outputs[1]


def test_beam_search_finds_the_likelier_output_and_the_length_penalty_decides_between_lengths():
    table, source = TableModel(), torch.zeros(1, 1, dtype=torch.long)
    A, B, C = TableModel.A, TableModel.B, TableModel.C
    assert generate(table, source, START, END, GenerationSettings(max_length=5, use_cache=False)) == [[A, C, END]]  # 0.6 x 0.35 = 0.21
    beam = GenerationSettings(max_length=5, beam_size=2, length_penalty=0.0, use_cache=False)
    assert generate(table, source, START, END, beam) == [[B, END]]  # 0.4 x 0.95 = 0.38
    # log(0.21) / 3**2 > log(0.38) / 2**2: a strong length penalty prefers the longer output
    assert math.log(0.21) / 9 > math.log(0.38) / 4
    long = GenerationSettings(max_length=5, beam_size=2, length_penalty=2.0, use_cache=False)
    assert generate(table, source, START, END, long) in ([[A, C, END]], [[TableModel.A, TableModel.D, END]])


def test_no_repeat_ngram_size_bans_what_would_repeat_an_ngram():
    assert banned_tokens([5, 6, 7, 5, 6], 3) == [7]
    assert sorted(banned_tokens([5, 6, 5, 7, 5], 2)) == [6, 7]
    assert banned_tokens([5, 6], 3) == [] and banned_tokens([5, 5, 5], 0) == []
    net, source = model(), sources()
    for beam_size in (1, 3):
        for output in generate(net, source, START, END, GenerationSettings(max_length=14, beam_size=beam_size, no_repeat_ngram_size=2)):
            bigrams = list(zip(output, output[1:]))
            assert len(bigrams) == len(set(bigrams))


def test_bad_settings_are_one_line_and_the_model_mode_is_restored():
    with pytest.raises(ConfigError, match="need max_length >= 1, beam_size >= 1"):
        GenerationSettings(beam_size=0)
    net = model().train()
    generate(net, sources(), START, END, GenerationSettings(max_length=3))
    assert net.training
