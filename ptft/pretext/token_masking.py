"""BERT's input corruption for masked-LM pretraining."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # cross_entropy's default ignore_index: positions without a target


def mask_tokens(
    tokens: torch.Tensor,
    mask_id: int,
    special_ids: torch.Tensor,
    replacement_ids: torch.Tensor,
    generator: torch.Generator | None = None,
    select_rate: float = 0.15,
    mask_rate: float = 0.8,
    random_rate: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)``: ``select_rate`` of the non-special tokens are selected; of those,
    ``mask_rate`` become the mask token, ``random_rate`` a random token of ``replacement_ids`` (see
    :func:`non_special_ids`), the rest stay as they are. ``labels`` holds the original id at selected positions, ``IGNORE_INDEX`` elsewhere.
    Special tokens (padding, end of text, ...) are never selected."""
    candidates = ~torch.isin(tokens, special_ids)
    draw = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    selected = (draw < select_rate) & candidates
    labels = torch.where(selected, tokens, IGNORE_INDEX)
    choice = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    replace_mask = selected & (choice < mask_rate)
    replace_random = selected & (choice >= mask_rate) & (choice < mask_rate + random_rate)
    random_ids = replacement_ids[torch.randint(len(replacement_ids), tokens.shape, generator=generator, device=tokens.device)]
    inputs = torch.where(replace_mask, mask_id, torch.where(replace_random, random_ids, tokens))
    return inputs, labels


def non_special_ids(vocab_size: int, special_ids: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The ids ``0 .. vocab_size - 1`` that are not special: what a random replacement draws from
    (built once, not per step: finding them costs a host sync)."""
    special = set(special_ids)
    return torch.tensor([i for i in range(vocab_size) if i not in special], device=device)
