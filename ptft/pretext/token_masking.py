"""BERT's input corruption for masked-LM pretraining."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # cross_entropy's default ignore_index: positions without a target


def mask_tokens(
    tokens: torch.Tensor,
    mask_id: int,
    special_ids: torch.Tensor,
    vocab_size: int,
    generator: torch.Generator | None = None,
    select_rate: float = 0.15,
    mask_rate: float = 0.8,
    random_rate: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)``: ``select_rate`` of the non-special tokens are selected; of those,
    ``mask_rate`` become the mask token, ``random_rate`` a random non-special token, the rest stay
    as they are. ``labels`` holds the original id at selected positions, ``IGNORE_INDEX`` elsewhere.
    Special tokens (padding, end of text, ...) are never selected."""
    candidates = ~torch.isin(tokens, special_ids)
    draw = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    selected = (draw < select_rate) & candidates
    labels = torch.where(selected, tokens, IGNORE_INDEX)
    choice = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    replace_mask = selected & (choice < mask_rate)
    replace_random = selected & (choice >= mask_rate) & (choice < mask_rate + random_rate)
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=tokens.device)
    allowed[special_ids] = False
    allowed_ids = allowed.nonzero().squeeze(1)
    random_ids = allowed_ids[torch.randint(len(allowed_ids), tokens.shape, generator=generator, device=tokens.device)]
    inputs = torch.where(replace_mask, mask_id, torch.where(replace_random, random_ids, tokens))
    return inputs, labels
