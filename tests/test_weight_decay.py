import pytest
import torch

from conftest import small_encoder
from ptft.backbones import DCGANEncoder, TextTransformer, ViT
from ptft.tasks import Classification, GANPretraining, MaskedLMPretraining
from ptft.weight_decay import split_weight_decay


def adamw(params):
    return torch.optim.AdamW(params, lr=0.1, weight_decay=0.05)


def named(groups, module):
    """{group name (or index): (weight decay, sorted parameter names)}."""
    names = {id(p): n for n, p in module.named_parameters()}
    return {g.get("name", i): (g.get("weight_decay"), sorted(names[id(p)] for p in g["params"])) for i, g in enumerate(groups)}


def test_vit_decays_only_its_matrices():
    vit = ViT(image_size=16, patch_size=8, depth=1, width=32, heads=2, position_embedding="learned")
    groups = named(split_weight_decay([{"params": vit.parameters(), "name": "vit", "lr": 0.5}], vit), vit)
    assert groups == {
        "vit": (None, ["blocks.0.mlp.0.weight", "blocks.0.mlp.3.weight", "blocks.0.proj.weight", "blocks.0.qkv.weight", "patch_embed.weight"]),
        "vit.no_decay": (0.0, sorted([
            "class_token", "position_embedding", "patch_embed.bias", "norm.weight", "norm.bias", *(f"blocks.0.{n}" for n in (
                "norm1.weight", "norm1.bias", "qkv.bias", "proj.bias", "norm2.weight", "norm2.bias", "mlp.0.bias", "mlp.3.bias"))])),
    }
    optimizer = adamw(split_weight_decay([{"params": vit.parameters(), "lr": 0.5}], vit))
    assert [(g["weight_decay"], g["lr"]) for g in optimizer.param_groups] == [(0.05, 0.5), (0.0, 0.5)]


def test_spectral_norm_discriminator_decays_its_original_weights():
    model = GANPretraining(DCGANEncoder(base_width=8, num_layers=2), image_size=16, latent_dim=8, generator_width=8, spectral_norm=True,
                           discriminator_optimizer=adamw, generator_optimizer=adamw)
    discriminator, generator = model.configure_optimizers()
    assert named(discriminator.param_groups, model) == {
        0: (0.05, ["backbone.layers.0.parametrizations.weight.original", "backbone.layers.3.parametrizations.weight.original",
                   "critic_head.linear.parametrizations.weight.original"]),
        1: (0.0, ["backbone.layers.0.bias", "backbone.layers.4.bias", "backbone.layers.4.weight", "critic_head.linear.bias"]),
    }
    convolutions = sorted(f"generator.{n}.weight" for n, m in model.generator.named_modules() if isinstance(m, torch.nn.ConvTranspose2d))
    rest = sorted(f"generator.{n}" for n, _ in model.generator.named_parameters() if f"generator.{n}" not in convolutions)
    assert named(generator.param_groups, model) == {0: (0.05, convolutions), 1: (0.0, rest)}  # rest: norms and biases


def test_tied_lm_head_embedding_appears_once_without_decay():
    model = MaskedLMPretraining(TextTransformer(vocab_size=64, max_length=16, depth=1, width=32, heads=2), optimizer=adamw)
    groups = named(model.configure_optimizers().param_groups, model)
    assert groups[0] == (0.05, sorted(["backbone.blocks.0.qkv.weight", "backbone.blocks.0.proj.weight", "backbone.blocks.0.mlp.0.weight",
                                       "backbone.blocks.0.mlp.3.weight", "lm_head.transform.0.weight"]))
    assert {"backbone.token_embedding.weight", "backbone.position_embedding", "lm_head.bias", "lm_head.transform.2.weight"} <= set(groups[1][1])
    assert sum(len(names) for _, names in groups.values()) == len(list(model.parameters()))


def test_layer_decay_groups_keep_their_scale_on_both_halves():
    vit = ViT(image_size=16, patch_size=8, depth=2, width=32, heads=2)
    model = Classification(num_classes=3, backbone=vit, layer_decay=0.5, backbone_lr=0.8, optimizer=adamw)
    groups = model.configure_optimizers().param_groups
    assert {g["name"]: (g.get("lr_scale"), g["weight_decay"]) for g in groups} == {
        "head": (None, 0.05), "head.no_decay": (None, 0.0),
        "backbone.0": (0.125, 0.05), "backbone.0.no_decay": (0.125, 0.0),  # patch embedding + class token
        "backbone.1": (0.25, 0.05), "backbone.1.no_decay": (0.25, 0.0),
        "backbone.2": (0.5, 0.05), "backbone.2.no_decay": (0.5, 0.0),
        "backbone.3.no_decay": (1.0, 0.0),  # the final norm alone: its empty decayed half is dropped
    }
    assert all(g["lr"] == pytest.approx(0.8 * g["lr_scale"]) for g in groups if "lr_scale" in g)


def test_split_can_be_turned_off_and_refuses_foreign_parameters():
    model = Classification(num_classes=3, backbone=small_encoder(), optimizer=adamw)
    model.exclude_from_weight_decay = False
    assert [(g["name"], g["weight_decay"]) for g in model.configure_optimizers().param_groups] == [("head", 0.05), ("backbone", 0.05)]
    with pytest.raises(ValueError, match="parameter group 'x' holds a parameter that is not in the module"):
        split_weight_decay([{"params": [torch.nn.Parameter(torch.zeros(1))], "name": "x"}], model)
