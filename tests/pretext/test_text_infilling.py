"""BART's corruptions: span infilling (rate, Poisson lengths, one mask per span) and sentence permutation."""

import pytest
import torch

from ptft.pretext.text_infilling import infill_spans, permute_sentences, poisson_span_lengths

MASK = 4


@pytest.mark.parametrize("seed", range(5))
def test_span_infilling_hides_the_rate_of_tokens_one_mask_per_span(seed):
    length = 200
    tokens = torch.arange(10, 10 + length)
    corrupted = infill_spans(tokens, MASK, 0.3, 3.0, torch.Generator().manual_seed(seed))
    masks = int((corrupted == MASK).sum())
    kept = len(corrupted) - masks
    assert length - kept == 60  # exactly round(0.3 * 200) tokens hidden
    values = corrupted.tolist()
    assert all(not (a == MASK and b == MASK) for a, b in zip(values, values[1:])), "spans never touch"
    # every run of hidden tokens sits behind exactly one mask
    bounds = [9, *[v for v in values if v != MASK], 10 + length]
    gaps_with_mask, position = set(), 0
    for value in values:
        if value == MASK:
            gaps_with_mask.add(position)
        else:
            position += 1
    for gap, (before, after) in enumerate(zip(bounds[:-1], bounds[1:])):
        assert after - before - 1 == 0 or gap in gaps_with_mask


def test_span_lengths_are_poisson_and_sum_to_the_total():
    lengths = poisson_span_lengths(30000, 3.0, torch.Generator().manual_seed(0))
    assert sum(lengths) == 30000
    values = torch.tensor(lengths[:-1], dtype=torch.float)
    assert abs(values.mean() - 3.0) < 0.1 and abs(values.var() - 3.0) < 0.2  # Poisson: mean = variance = lambda
    assert (values == 0).float().mean() == pytest.approx(torch.exp(torch.tensor(-3.0)).item(), abs=0.01)


def test_no_rate_changes_nothing_and_the_corruption_is_seeded():
    tokens = torch.arange(10, 60)
    assert torch.equal(infill_spans(tokens, MASK, 0.0, 3.0, torch.Generator().manual_seed(0)), tokens)
    first, again = (infill_spans(tokens, MASK, 0.3, 3.0, torch.Generator().manual_seed(1)) for _ in range(2))
    assert torch.equal(first, again)


def test_sentence_permutation_is_a_permutation_of_whole_sentences():
    tokens = torch.tensor([10, 11, 1, 20, 1, 30, 31, 32, 1, 40])  # 1 ends a sentence; the last has no end
    sentences = {(10, 11, 1), (20, 1), (30, 31, 32, 1), (40,)}
    orders = set()
    for seed in range(20):
        permuted = permute_sentences(tokens, tokens == 1, torch.Generator().manual_seed(seed))
        assert sorted(permuted.tolist()) == sorted(tokens.tolist())
        pieces, current = [], []
        for value in permuted.tolist():
            current.append(value)
            if value == 1 or value == 40 and current == [40]:
                pieces.append(tuple(current))
                current = []
        pieces += [tuple(current)] if current else []
        assert set(pieces) == sentences
        orders.add(tuple(pieces))
    assert len(orders) > 5
