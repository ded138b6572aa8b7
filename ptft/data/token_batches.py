"""Texts as model inputs: ``<cls> tokens <sep>`` id lists of a bounded length, right-padded into batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ptft.data.tokenizer import TextTokenizer


def encode_texts(tokenizer: TextTokenizer, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int, int]:
    """The ids of ``<cls> text <sep>`` for each text, at most ``max_length`` of them (a longer text
    loses its last tokens; the final ``<sep>`` stays); also how many texts were truncated and the
    longest wrapped length before truncation."""
    encoded = tokenizer.encode_batch(texts)
    ids = [[tokenizer.cls_id, *tokens[:max_length - 2], tokenizer.sep_id] for tokens in encoded]
    lengths = [len(tokens) + 2 for tokens in encoded]
    return ids, sum(length > max_length for length in lengths), max(lengths, default=0)


def pad_ids(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """``(len(rows), longest)`` int64 ids, each row right-padded with ``pad_id``."""
    tokens = torch.full((len(rows), max(len(ids) for ids in rows)), pad_id, dtype=torch.long)
    for row, ids in enumerate(rows):
        tokens[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return tokens
