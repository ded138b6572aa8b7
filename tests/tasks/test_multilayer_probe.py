"""Multi-layer linear probes (model.probe_layers): stage maps of a spatial backbone, max-pooled to a
grid and concatenated, under the classification head (the DCGAN paper's probe of its discriminator)."""

import pytest
import pytorch_lightning as pl
import torch

from ptft.backbones import DCGANEncoder, ResNet, TextTransformer, ViT
from ptft.data import ImageFolderDataModule
from ptft.errors import ConfigError
from ptft.tasks import Classification


def fit(model, image_tree, epochs):
    pl.seed_everything(0)
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0, train_augment="flip")
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    return trainer


@pytest.mark.parametrize("backbone, count", [
    (lambda: ResNet("resnet18", small_images=True), 5),  # stem + layer1-4
    (lambda: ResNet("resnet50", small_images=True), 5),
    (lambda: DCGANEncoder(base_width=8, num_layers=3), 3),  # each stride-2 block
    (lambda: ViT(image_size=16, patch_size=4, depth=2, width=32, heads=2), 2),  # each block
])
def test_stage_features_match_the_stage_channels_and_end_with_the_feature_map(backbone, count):
    torch.manual_seed(0)
    net = backbone().eval()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        maps = net.stage_features(images)
        last = net.forward_features(images)
        first_two = net.stage_features(images, depth=2)  # stops after the second stage
    assert len(first_two) == 2 and all(torch.equal(a, b) for a, b in zip(first_two, maps))
    assert len(maps) == len(net.stage_channels()) == count
    assert [m.shape[1] for m in maps] == net.stage_channels() and all(m.ndim == 4 and len(m) == 2 for m in maps)
    if isinstance(net, ViT):  # the last block's tokens before the final norm
        last_tokens = net.norm(maps[-1].flatten(2).transpose(1, 2))
        torch.testing.assert_close(last_tokens.transpose(1, 2).reshape(last.shape), last)
    else:
        torch.testing.assert_close(maps[-1], last)


def test_the_probe_reads_sum_of_channels_times_grid_squared_features():
    backbone = DCGANEncoder(base_width=8, num_layers=3)  # channels 8, 16, 32
    model = Classification(num_classes=3, backbone=backbone, mode="linear_probe", probe_layers=[0, -1], probe_grid=2)
    assert model.probe_layers == [0, 2]
    assert model.feature_dim == (8 + 32) * 2**2 == model.head[-1].in_features
    features = model.features(torch.randn(5, 3, 16, 16))
    assert features.shape == (5, 160) and not features.requires_grad  # frozen backbone: no grad
    assert model(torch.randn(5, 3, 16, 16)).shape == (5, 3)


def test_without_probe_layers_the_head_reads_the_pooled_features_as_before():
    model = Classification(num_classes=3, backbone=DCGANEncoder(base_width=8, num_layers=3))
    assert model.probe_layers is None and model.feature_dim == 32 == model.head[-1].in_features
    assert not any("probe" in key for key in model.state_dict())


def test_a_multilayer_linear_probe_trains_and_leaves_the_backbone_alone(image_tree):
    pl.seed_everything(0)
    model = Classification(num_classes=3, backbone=DCGANEncoder(base_width=8, num_layers=3), mode="linear_probe", feature_norm=True,
                           probe_layers=[1, 2], probe_grid=2, optimizer=lambda params: torch.optim.Adam(params, lr=0.05))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainer = fit(model, image_tree, epochs=8)
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in before.items())  # running stats too
    assert trainer.callback_metrics["val/acc"] > 0.9  # the classes differ in colour


def test_full_mode_trains_the_backbone_through_the_probed_stages(image_tree):
    model = Classification(num_classes=3, backbone=DCGANEncoder(base_width=8, num_layers=2), mode="full", probe_layers=[0, 1])
    before = {k: v.clone() for k, v in model.backbone.named_parameters()}
    fit(model, image_tree, epochs=1)
    assert all(not torch.equal(v, dict(model.backbone.named_parameters())[k]) for k, v in before.items())


@pytest.mark.parametrize("backbone, layers, grid, message", [
    (lambda: DCGANEncoder(base_width=8, num_layers=3), [0, 3], 4,
     r"model.probe_layers: stage 3 is out of range: DCGANEncoder has 3 stages \(0..2, or -3..-1 from the end\)"),
    (lambda: DCGANEncoder(base_width=8, num_layers=3), [-4], 4, "model.probe_layers: stage -4 is out of range"),
    (lambda: DCGANEncoder(base_width=8, num_layers=3), [], 4, "model.probe_layers is empty"),
    (lambda: DCGANEncoder(base_width=8, num_layers=3), [1, -2], 4, "model.probe_layers names a stage twice"),
    (lambda: DCGANEncoder(base_width=8, num_layers=3), [1], 0, "model.probe_grid must be >= 1"),
    (lambda: TextTransformer(vocab_size=50, max_length=16, depth=1, width=32, heads=2), [0], 4,
     "model.probe_layers: the backbone TextTransformer has no stages to probe"),
])
def test_bad_probe_layers_are_refused_naming_the_option(backbone, layers, grid, message):
    with pytest.raises(ConfigError, match=message):
        Classification(num_classes=3, backbone=backbone(), mode="linear_probe", probe_layers=layers, probe_grid=grid)
