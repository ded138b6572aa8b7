"""BART's text corruptions as pure functions of one token sequence: sentence permutation and span
infilling (each span of Poisson-distributed length becomes a single mask token)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ptft.data.tokenizer import TextTokenizer

SENTENCE_ENDS = (".", "!", "?")


def permute_sentences(tokens: torch.Tensor, sentence_end: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``tokens`` ``(T,)`` with its sentences in a random order. A sentence ends after each position
    where ``sentence_end`` ``(T,)`` is True (a trailing piece without an end is a sentence too)."""
    ends = (sentence_end.nonzero().flatten() + 1).tolist()
    bounds = [0, *[e for e in ends if e < len(tokens)], len(tokens)]
    sentences = [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    order = torch.randperm(len(sentences), generator=generator).tolist()
    return torch.cat([sentences[i] for i in order]) if sentences else tokens


def poisson_span_lengths(total: int, poisson_lambda: float, generator: torch.Generator) -> list[int]:
    """Span lengths drawn from Poisson(``poisson_lambda``) until they cover ``total`` tokens; the
    last is shortened so they sum to exactly ``total``. Zero-length spans (an inserted mask) are kept."""
    lengths: list[int] = []
    covered = 0
    while covered < total:
        draws = torch.poisson(torch.full((max(4, total // max(int(poisson_lambda), 1)),), float(poisson_lambda)), generator=generator)
        for length in draws.long().tolist():
            lengths.append(min(length, total - covered))
            covered += lengths[-1]
            if covered >= total:
                break
    return lengths


def infill_spans(tokens: torch.Tensor, mask_id: int, rate: float, poisson_lambda: float, generator: torch.Generator) -> torch.Tensor:
    """BART's text infilling of ``tokens`` ``(T,)``: ``round(rate * T)`` tokens in spans of
    Poisson(``poisson_lambda``) length are hidden, and each span (a zero-length one too) becomes one
    ``mask_id``. Spans never touch, so each mask stands for exactly one span. Returns the corrupted
    sequence (shorter than ``tokens`` by the hidden tokens, longer by the masks)."""
    length = len(tokens)
    spans = poisson_span_lengths(round(rate * length), poisson_lambda, generator)
    kept = length - sum(spans)
    spans = spans[: kept + 1]  # at most one span per gap between kept tokens (only short sequences hit this)
    # place the spans in distinct gaps of the kept tokens (gap g: before kept token g), in a random order
    gaps = torch.randperm(kept + 1, generator=generator)[: len(spans)].sort().values.tolist()
    order = torch.randperm(len(spans), generator=generator).tolist()
    pieces, start, offset = [], 0, 0  # start: next original position; offset: hidden tokens so far
    for gap, span in zip(gaps, (spans[i] for i in order)):
        position = gap + offset
        pieces += [tokens[start:position], tokens.new_tensor([mask_id])]
        start, offset = position + span, offset + span
    pieces.append(tokens[start:])
    return torch.cat(pieces)


def sentence_end_table(tokenizer: TextTokenizer) -> torch.Tensor:
    """``(vocab,)`` booleans: True for the tokens that end a sentence, the end-of-text token and
    those whose text ends with ``.``, ``!`` or ``?`` (after stripping spaces)."""
    table = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
    for token in range(tokenizer.vocab_size):
        table[token] = tokenizer.tokenizer.decode([token], skip_special_tokens=False).strip().endswith(SENTENCE_ENDS)
    table[tokenizer.eos_id] = True
    return table


def corrupt_text(tokens: torch.Tensor, sentence_end: torch.Tensor | None, mask_id: int, rate: float, poisson_lambda: float,
                 generator: torch.Generator) -> torch.Tensor:
    """BART's corruption of ``tokens`` ``(T,)``: sentence permutation (unless ``sentence_end``, a
    :func:`sentence_end_table`, is None), then span infilling."""
    if sentence_end is not None:
        tokens = permute_sentences(tokens, sentence_end[tokens], generator)
    return infill_spans(tokens, mask_id, rate, poisson_lambda, generator)
