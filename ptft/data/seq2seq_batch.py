"""The batch every sequence-to-sequence DataModule gives and every seq2seq task reads."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Seq2SeqBatch(NamedTuple):
    """Source texts with their targets.

    ``source``: ``(B, S)`` ids of ``<cls> source <sep>``, right-padded with the tokenizer's pad id;
    ``target``: ``(B, T)`` ids of ``<cls> target <sep>``, right-padded the same way (the decoder
    reads ``target[:, :-1]`` and predicts ``target[:, 1:]``); ``references``: for each example, the
    reference texts generated outputs are scored against: the target text first, then any extra
    references the data has (``reference_columns``).
    """

    source: torch.Tensor
    target: torch.Tensor
    references: list[list[str]]
