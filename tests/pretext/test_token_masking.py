"""BERT masking: rates, and special tokens never selected."""

import torch

from ptft.pretext.token_masking import IGNORE_INDEX, mask_tokens, non_special_ids

MASK, VOCAB = 4, 1000
SPECIAL = torch.tensor([0, 1, 2, 3, 4, 5])
REPLACEMENTS = non_special_ids(VOCAB, SPECIAL.tolist())


def test_selection_and_replacement_rates_on_a_large_batch():
    tokens = torch.randint(6, VOCAB, (256, 512), generator=torch.Generator().manual_seed(0))
    tokens[:, -50:] = 0  # padding
    tokens[:, ::40] = 5  # end-of-text tokens
    inputs, labels = mask_tokens(tokens, MASK, SPECIAL, REPLACEMENTS, torch.Generator().manual_seed(1))
    selected = labels != IGNORE_INDEX
    candidates = ~torch.isin(tokens, SPECIAL)
    assert not (selected & ~candidates).any()  # padding and special tokens are never selected
    assert abs(selected.sum() / candidates.sum() - 0.15) < 0.005
    assert torch.equal(labels[selected], tokens[selected]) and torch.equal(inputs[~selected], tokens[~selected])
    masked = (inputs[selected] == MASK).float().mean()
    kept = (inputs[selected] == tokens[selected]).float().mean()
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01  # (a random replacement equal to the token: 0.1%)
    replaced = inputs[selected & (inputs != MASK) & (inputs != tokens)]
    assert abs(len(replaced) / selected.sum() - 0.1) < 0.01 and not torch.isin(replaced, SPECIAL).any()


def test_masking_is_a_function_of_the_generator():
    tokens = torch.randint(6, VOCAB, (4, 64))
    a = mask_tokens(tokens, MASK, SPECIAL, REPLACEMENTS, torch.Generator().manual_seed(3))
    b = mask_tokens(tokens, MASK, SPECIAL, REPLACEMENTS, torch.Generator().manual_seed(3))
    c = mask_tokens(tokens, MASK, SPECIAL, REPLACEMENTS, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_replacements_skip_scattered_special_ids():
    ids = non_special_ids(8, [0, 3, 7])  # e.g. a BERT vocabulary: [PAD] 0, [UNK] 100, [CLS] 101, ...
    assert ids.tolist() == [1, 2, 4, 5, 6]
