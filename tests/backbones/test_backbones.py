import inspect
import re

import pytest
import torch

from ptft.backbones import Conformer, DCGANEncoder, DeepSpeech2, ResNet, TextTransformer, ViT
from ptft.errors import ConfigError
from ptft.handoff import build_backbone


@pytest.mark.parametrize(
    "backbone, size, out_dim, stride",
    [
        (lambda: ResNet("resnet18"), 64, 512, 32),
        (lambda: ResNet("resnet18", small_images=True), 32, 512, 8),
        (lambda: ResNet("resnet34", small_images=True, norm="group"), 32, 512, 8),
        (lambda: ResNet("resnet50", small_images=True, norm="none"), 32, 2048, 8),
        (lambda: DCGANEncoder(num_layers=4), 64, 512, 16),
        (lambda: DCGANEncoder(base_width=16, num_layers=3, norm="group"), 32, 64, 8),
    ],
)
def test_features_pooled_output_and_stride(backbone, size, out_dim, stride):
    net = backbone().eval()
    x = torch.randn(2, 3, size, size)
    features = net.forward_features(x)
    assert features.shape == (2, net.feature_channels, size // stride, size // stride)
    assert net.out_dim == out_dim and net.feature_stride == stride
    assert net(x).shape == (2, out_dim)
    assert torch.allclose(net(x), features.mean(dim=(2, 3)), atol=1e-5)


def test_spec_rebuilds_the_same_architecture():
    net = ResNet("resnet34", small_images=True, norm="group", dropout=0.1)
    spec = net.spec()
    assert spec == {
        "class_path": "ptft.backbones.resnet.ResNet",
        "init_args": {"arch": "resnet34", "small_images": True, "norm": "group", "dropout": 0.1, "zero_init_residual": False},
    }
    rebuilt = build_backbone(spec)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_norm_choices_change_the_layers():
    assert any(isinstance(m, torch.nn.GroupNorm) for m in DCGANEncoder(norm="group").modules())
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in DCGANEncoder(norm="none").modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in ResNet(norm="group").modules())


def test_dropout_applies_to_pooled_features_in_train_mode():
    net = DCGANEncoder(base_width=8, num_layers=2, dropout=0.5).train()
    out = net(torch.randn(4, 3, 16, 16))
    assert (out == 0).float().mean() > 0.2
    assert (net.eval()(torch.randn(4, 3, 16, 16)) != 0).all()


@pytest.mark.parametrize("make, message", [
    (lambda: ResNet("resnet101"), "arch must be one of"),
    (lambda: DCGANEncoder(norm="layer"), "norm must be one of"),
    (lambda: DCGANEncoder(num_layers=0), "num_layers must be >= 1"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("cls", [ResNet, DCGANEncoder, ViT, TextTransformer, DeepSpeech2, Conformer])
def test_every_backbone_names_what_fine_tuning_may_override(cls):
    assert "dropout" in cls.fine_tuning_options and set(cls.fine_tuning_options) <= set(inspect.signature(cls).parameters)


@pytest.mark.parametrize("width, problem", [
    (10_000_000, r"its weights would take 4,470,351\.4 GiB, more than the [\d,.]+ GiB of memory available"),
    (10**20, "a tensor's size overflows"),
    (-4, "a tensor's size is negative"),
])
def test_sizes_too_large_or_impossible_are_one_config_error_naming_them_before_anything_is_allocated(width, problem, monkeypatch):
    monkeypatch.setattr(torch.nn.Embedding, "reset_parameters", lambda self: self.weight.is_meta or pytest.fail("a tensor was initialised"))
    with pytest.raises(ConfigError) as refused:
        TextTransformer(vocab_size=50, max_length=16, depth=1, width=width, heads=1)
    assert re.fullmatch(rf"TextTransformer\(vocab_size=50, max_length=16, depth=1, width={width}, heads=1\) cannot be built: "
                        rf"{problem}; give positive sizes whose weights fit in memory", str(refused.value))
