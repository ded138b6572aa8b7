"""TextTransformer: causal masking, padding, tied LM head, layer groups."""

import pytest
import torch

from ptft.backbones import TextTransformer
from ptft.pretext.lm_head import TiedLMHead


def small(**kw):
    return TextTransformer(vocab_size=50, max_length=16, depth=2, width=32, heads=4, dropout=0.0, **kw).eval()


def test_causal_states_do_not_see_later_tokens_and_bidirectional_ones_do():
    x = torch.randint(6, 50, (2, 10))
    y = x.clone()
    y[:, 6:] = 7
    causal, bidirectional = small(causal=True), small(causal=False)
    assert torch.allclose(causal.hidden_states(x)[:, :6], causal.hidden_states(y)[:, :6], atol=1e-6)
    assert not torch.allclose(bidirectional.hidden_states(x)[:, :6], bidirectional.hidden_states(y)[:, :6], atol=1e-4)
    # the fast path for unpadded blocks computes the same
    assert torch.allclose(causal.hidden_states(x, padding=False), causal.hidden_states(x), atol=1e-6)


@pytest.mark.parametrize("pool", ["mean", "last", "cls"])
@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_change_pooled_features(pool, causal):
    model = small(causal=causal, pool=pool)
    x = torch.randint(6, 50, (3, 7))
    padded = torch.cat([x, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    assert torch.allclose(model(padded), model(x), atol=1e-5)


def test_the_lm_head_ties_its_weights_to_the_token_embedding():
    model = small()
    head = TiedLMHead(32, 50, transform=True)
    assert "weight" not in dict(head.named_parameters()) and all(p.shape != (50, 32) for p in head.parameters())
    logits = head(model.hidden_states(torch.randint(6, 50, (2, 5))), model.token_embedding.weight)
    assert logits.shape == (2, 5, 50)
    logits.sum().backward()
    assert model.token_embedding.weight.grad is not None and model.token_embedding.weight.grad.abs().sum() > 0


def test_layer_groups_cover_every_parameter_once_from_input_to_output():
    model = small()
    groups = model.layer_groups()
    assert len(groups) == 1 + 2 + 1 and set(groups[0]) == {"token_embedding.weight", "position_embedding"}
    assert groups[-1] == ["norm.weight", "norm.bias"]
    names = [n for g in groups for n in g]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())


def test_too_long_input_is_refused():
    with pytest.raises(ValueError, match="longer than the backbone's max_length 16"):
        small()(torch.ones(1, 17, dtype=torch.long))
