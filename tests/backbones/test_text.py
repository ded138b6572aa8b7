"""TextTransformer: causal masking, padding, tied LM head, layer groups."""

import pytest
import torch

from ptft.backbones import TextTransformer
from ptft.handoff import build_backbone
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


def test_bias_false_leaves_no_bias_anywhere_and_weight_decay_still_splits():
    from ptft.weight_decay import split_weight_decay

    model = small(bias=False)
    names = [n for n, _ in model.named_parameters()]
    assert names and not [n for n in names if n.endswith("bias")]
    assert model.blocks[0].norm1.bias is None and model.norm.bias is None
    assert model(torch.randint(6, 50, (2, 5))).shape == (2, 32)
    groups = split_weight_decay([{"params": list(model.parameters())}], model)
    assert sum(len(g["params"]) for g in groups) == len(names)
    assert sorted(n for g in model.layer_groups() for n in g) == sorted(names)
    assert model.layer_groups()[-1] == ["norm.weight"]


def test_scaled_residual_init_gives_the_residual_projections_std_002_over_sqrt_2_depth():
    depth = 8
    model = TextTransformer(vocab_size=50, max_length=16, depth=depth, width=256, heads=4, scaled_residual_init=True)
    scaled = 0.02 / (2 * depth) ** 0.5
    for block in model.blocks:
        assert block.proj.weight.std().item() == pytest.approx(scaled, rel=0.05)
        assert block.mlp[3].weight.std().item() == pytest.approx(scaled, rel=0.05)
        assert block.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert block.mlp[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
    plain = TextTransformer(vocab_size=50, max_length=16, depth=depth, width=256, heads=4)
    assert plain.blocks[0].proj.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_the_default_model_is_unchanged_names_and_seeded_init():
    """Exported specs without the new keys rebuild today's model: the same parameters and, from
    the same seed, the same initial values (checksums recorded before bias / scaled_residual_init)."""
    with torch.random.fork_rng():  # seeds only here: other tests keep their random stream
        torch.manual_seed(0)
        model = small()
        names = [n for n, _ in model.named_parameters()]
        block = [f"blocks.{{i}}.{n}" for n in ("norm1.weight", "norm1.bias", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
                                              "norm2.weight", "norm2.bias", "mlp.0.weight", "mlp.0.bias", "mlp.3.weight", "mlp.3.bias")]
        assert names == ["position_embedding", "token_embedding.weight", *(n.format(i=i) for i in range(2) for n in block), "norm.weight", "norm.bias"]
        flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64)
        assert float((flat * weights).sum()) == pytest.approx(2257586.293490196, rel=1e-9)
        assert float(flat.pow(2).sum()) == pytest.approx(170.61798960640758, rel=1e-9)
        spec = model.spec()
        spec["init_args"] = {k: v for k, v in spec["init_args"].items() if k not in ("bias", "scaled_residual_init")}
        torch.manual_seed(0)
        rebuilt = build_backbone(spec)
        assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values(), strict=True))


def test_default_models_keep_their_weights_names_and_norm_epsilons():
    model = small()
    assert sorted(k for k in model.state_dict() if not k.startswith("blocks.")) == ["norm.bias", "norm.weight", "position_embedding", "token_embedding.weight"]
    assert model.blocks[0].norm1.eps == 1e-6 and model.norm.eps == 1e-5 and model.embedding_norm is None
    assert [m.eps for m in small(norm_eps=1e-9).modules() if isinstance(m, torch.nn.LayerNorm)] == [1e-9] * 5


def test_post_ln_normalises_the_embeddings_has_no_final_norm_and_adds_token_type_0():
    model = small(norm_position="post", token_types=3)
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if n.startswith("norm.")] and model.blocks[0].post_norm
    groups = model.layer_groups()
    assert len(groups) == 1 + 2 and set(groups[0]) == {"token_embedding.weight", "position_embedding", "token_type_embedding",
                                                       "embedding_norm.weight", "embedding_norm.bias"}
    assert sorted(n for g in groups for n in g) == sorted(names)
    x = torch.randint(6, 50, (2, 5))
    embedded = model.embedding_norm(model.token_embedding(x) + model.position_embedding[:5] + model.token_type_embedding[0])
    with torch.no_grad():
        model.blocks = model.blocks[:0]  # the states are then the normalised embeddings
        assert torch.allclose(model.hidden_states(x), embedded, atol=1e-6)


@pytest.mark.parametrize("kw,named", [({"norm_position": "middle"}, "norm_position"), ({"activation": "relu"}, "activation"),
                                      ({"norm_eps": 0.0}, "norm_eps"), ({"token_types": -1}, "token_types")])
def test_invalid_block_options_are_refused_naming_them(kw, named):
    with pytest.raises(ValueError, match=named):
        small(**kw)
