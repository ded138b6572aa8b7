"""Generation from an encoder-decoder model: greedy decoding and beam search (length penalty,
no-repeat n-grams), with or without the decoder's KV cache."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ptft.backbones.seq2seq import DecoderCache, Seq2SeqTransformer
from ptft.errors import ConfigError

if TYPE_CHECKING:
    from ptft.data.tokenizer import TextTokenizer


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate a target.

    Args:
        max_length: the longest output, in tokens after the start token (the end token included).
        beam_size: hypotheses kept per input; 1 is greedy decoding.
        length_penalty: a finished hypothesis scores ``sum log p / length ** length_penalty`` (0: the
            plain sum, which favours short outputs; above 1 favours longer ones).
        no_repeat_ngram_size: no n-gram of this size appears twice in an output (0: no constraint).
        use_cache: keep each decoder block's keys and values between steps (same result, faster).
        temperature: 0 picks the likeliest token at each step; above 0 samples from the softmax of
            the logits divided by it (``beam_size`` 1 only).
        top_k: with sampling, sample among the ``top_k`` likeliest tokens only (None: all).
    """

    max_length: int = 64
    beam_size: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    use_cache: bool = True
    temperature: float = 0.0
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.max_length < 1 or self.beam_size < 1 or self.no_repeat_ngram_size < 0:
            raise ConfigError(f"generation: need max_length >= 1, beam_size >= 1 and no_repeat_ngram_size >= 0, "
                              f"got {self.max_length}, {self.beam_size} and {self.no_repeat_ngram_size}")
        if self.temperature < 0 or (self.top_k is not None and self.top_k < 1):
            raise ConfigError(f"generation: need temperature >= 0 and top_k >= 1, got {self.temperature} and {self.top_k}")
        if self.temperature > 0 and self.beam_size > 1:
            raise ConfigError("generation: sampling (temperature > 0) needs beam_size 1; beam search keeps the likeliest hypotheses")


def banned_tokens(tokens: list[int], size: int) -> list[int]:
    """Tokens that would repeat an n-gram of ``size`` already in ``tokens`` if appended next."""
    if size < 1 or len(tokens) < size:
        return []
    prefix = tokens[len(tokens) - size + 1:]
    return [tokens[i + size - 1] for i in range(len(tokens) - size + 1) if tokens[i:i + size - 1] == prefix]


class Decoder:
    """Next-token log-probabilities of growing target prefixes ``(N, t)`` for fixed encoder states,
    through the KV cache (only the newest token is decoded) or by decoding each whole prefix."""

    def __init__(self, model: Seq2SeqTransformer, source: torch.Tensor, use_cache: bool) -> None:
        self.model = model
        self.source = source
        self.memory = model.encode(source)
        self.cache = DecoderCache() if use_cache else None

    def log_probs(self, prefixes: torch.Tensor) -> torch.Tensor:
        tokens = prefixes if self.cache is None else prefixes[:, self.cache.length:]
        states = self.model.decode(tokens, self.memory, self.cache)[:, -1:]
        return self.model.output_logits(states, self.memory, self.source)[:, 0].float().log_softmax(-1)

    def keep(self, rows: torch.Tensor, same_inputs: bool = False) -> None:
        """Continue with the prefixes ``rows`` (beam search reorders and duplicates hypotheses).
        ``same_inputs``: each row is a row of the same input as before, so the encoder states and the
        cross-attention cache need no reordering (beam search after its first step)."""
        if not same_inputs:
            self.source = self.source[rows]
            self.memory = type(self.memory)(self.memory.states[rows], None if self.memory.mask is None else self.memory.mask[rows])
        if self.cache is not None:
            self.cache.reorder(rows, cross=not same_inputs)


@torch.no_grad()
def generate(model: Seq2SeqTransformer, source: torch.Tensor, start_id: int, end_id: int,
             settings: GenerationSettings = GenerationSettings(), generator: torch.Generator | None = None) -> list[list[int]]:
    """Output ids (without the start token, up to and including ``end_id`` when it is reached) for
    each right-padded source ``(B, S)``: the best of ``beam_size`` hypotheses. A hypothesis is
    finished when it emits ``end_id``; an input is done when it has ``beam_size`` finished ones
    (or at ``max_length``, where the live ones count as finished). Sampling draws from ``generator``."""
    was_training = model.training
    model.eval()
    try:
        if settings.beam_size == 1:
            return _greedy(model, source, start_id, end_id, settings, generator)
        return _beam_search(model, source, start_id, end_id, settings)
    finally:
        model.train(was_training)


def ban_repeats(log_probs: torch.Tensor, prefixes: torch.Tensor, size: int) -> torch.Tensor:
    """``log_probs`` of the next tokens with those that would repeat an n-gram of ``size`` of their
    prefix (the start token left out) set to -inf."""
    if size:
        for row, prefix in enumerate(prefixes[:, 1:].tolist()):
            log_probs[row, banned_tokens(prefix, size)] = -math.inf
    return log_probs


def pick_tokens(log_probs: torch.Tensor, settings: GenerationSettings, generator: torch.Generator | None) -> torch.Tensor:
    """The likeliest token of each row of ``log_probs``, or one sampled (``settings.temperature``, ``top_k``)."""
    if settings.temperature == 0:
        return log_probs.argmax(-1)
    logits = log_probs / settings.temperature
    if settings.top_k is not None and settings.top_k < logits.shape[-1]:
        threshold = logits.topk(settings.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, -math.inf)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def _greedy(model: Seq2SeqTransformer, source: torch.Tensor, start_id: int, end_id: int,
            settings: GenerationSettings, generator: torch.Generator | None = None) -> list[list[int]]:
    """The likeliest (or a sampled) next token at each step, for the whole batch at once, until every output has ended."""
    decoder = Decoder(model, source, settings.use_cache)
    prefixes = torch.full((len(source), 1), start_id, dtype=torch.long, device=source.device)
    ended = torch.zeros(len(source), dtype=torch.bool, device=source.device)
    for _ in range(settings.max_length):
        log_probs = ban_repeats(decoder.log_probs(prefixes), prefixes, settings.no_repeat_ngram_size)
        next_tokens = pick_tokens(log_probs, settings, generator)
        prefixes = torch.cat([prefixes, next_tokens.masked_fill(ended, end_id)[:, None]], dim=1)
        ended |= next_tokens == end_id
        if bool(ended.all()):
            break
    outputs = []
    for row in prefixes[:, 1:].tolist():
        outputs.append(row[:row.index(end_id) + 1] if end_id in row else row)
    return outputs


def _beam_search(model: Seq2SeqTransformer, source: torch.Tensor, start_id: int, end_id: int,
                 settings: GenerationSettings) -> list[list[int]]:
    batch, beams = len(source), settings.beam_size
    decoder = Decoder(model, source, settings.use_cache)
    prefixes = torch.full((batch, 1), start_id, dtype=torch.long, device=source.device)
    scores = torch.zeros(batch, 1, device=source.device)  # live hypotheses per input: 1 at the start, then `beams`
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch

    def final_score(total: float, length: int) -> float:
        return total / length ** settings.length_penalty

    for step in range(settings.max_length):
        live = scores.shape[1]
        log_probs = ban_repeats(decoder.log_probs(prefixes), prefixes, settings.no_repeat_ngram_size)  # (batch * live, vocab)
        vocab = log_probs.shape[1]
        candidates = (scores.reshape(-1, 1) + log_probs).reshape(batch, live * vocab)
        top_scores, top_index = candidates.topk(min(2 * beams, live * vocab), dim=1)
        rows, tokens, next_scores = [], [], []
        for b in range(batch):
            chosen: list[tuple[int, int, float]] = []
            for score, index in zip(top_scores[b].tolist(), top_index[b].tolist()):
                if len(chosen) == beams or score == -math.inf:
                    break
                parent, token = b * live + index // vocab, index % vocab
                if token == end_id:
                    if not done[b]:
                        finished[b].append((final_score(score, step + 1), [*prefixes[parent, 1:].tolist(), token]))
                    continue
                chosen.append((parent, token, score))
            done[b] = done[b] or len(finished[b]) >= beams
            while len(chosen) < beams:  # every candidate ended (or was banned): keep the row shape
                chosen.append((b * live, end_id, -math.inf))
            for parent, token, score in chosen:
                rows.append(parent)
                tokens.append(token)
                next_scores.append(score if not done[b] else -math.inf)
        if all(done):
            break
        rows_tensor = torch.tensor(rows, device=source.device)
        decoder.keep(rows_tensor, same_inputs=step > 0)  # step 0 expands each input to its beams; later rows stay with their input
        prefixes = torch.cat([prefixes[rows_tensor], torch.tensor(tokens, device=source.device)[:, None]], dim=1)
        scores = torch.tensor(next_scores, device=source.device).reshape(batch, beams)
    else:  # max_length reached: the live hypotheses compete with the finished ones
        for b in range(batch):
            if not done[b]:
                for k in range(scores.shape[1]):
                    if scores[b, k] > -math.inf:
                        finished[b].append((final_score(float(scores[b, k]), prefixes.shape[1] - 1), prefixes[b * scores.shape[1] + k, 1:].tolist()))
    return [max(hypotheses, key=lambda h: h[0])[1] if hypotheses else [] for hypotheses in finished]


def output_text(tokenizer: TextTokenizer, ids: list[int]) -> str:
    """The text of generated ``ids``: special tokens dropped (the end-of-text token is a line break), spaces stripped."""
    special = set(tokenizer.special_ids) - {tokenizer.eos_id}
    return tokenizer.decode([i for i in ids if i not in special]).strip()
