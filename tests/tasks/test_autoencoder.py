import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from conftest import small_encoder
from ptft.backbones import ResNet
from ptft.data import ImageFolderDataModule
from ptft.tasks import AutoencoderPretraining
from ptft.tasks.autoencoder import mask_patches


def test_mask_patches_blanks_whole_patches_at_the_ratio():
    images = torch.ones(64, 3, 32, 32)
    masked = mask_patches(images, ratio=0.5, patch_size=4, generator=torch.Generator().manual_seed(0))
    patches = masked[:, 0].unfold(1, 4, 4).unfold(2, 4, 4)  # (B, 8, 8, 4, 4)
    per_patch = patches.flatten(3)
    assert ((per_patch == 0).all(-1) | (per_patch == 1).all(-1)).all()  # patches are all-or-nothing
    assert abs((masked == 0).float().mean().item() - 0.5) < 0.03
    assert not torch.equal(masked[0], masked[1])  # each image its own mask


@pytest.mark.parametrize("corruption", ["none", "gaussian", "mask"])
def test_corruptions(corruption):
    model = AutoencoderPretraining(small_encoder(), corruption=corruption, noise_std=0.5, mask_ratio=0.5)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    corrupted = model.corrupt(images)
    if corruption == "none":
        assert torch.equal(corrupted, images)
    elif corruption == "gaussian":
        assert 0.4 < (corrupted - images).std() < 0.6
    else:
        assert ((corrupted == 0) | (corrupted == images)).all() and (corrupted == 0).any()


@pytest.mark.parametrize("backbone, size", [(lambda: small_encoder(), 16), (lambda: ResNet(small_images=True), 16)])
def test_reconstruction_has_the_input_shape_for_every_backbone(backbone, size):
    model = AutoencoderPretraining(backbone())
    images = torch.randn(2, 3, size, size)
    assert model(images).shape == images.shape


def test_image_size_not_a_multiple_of_the_stride_is_named():
    model = AutoencoderPretraining(small_encoder())
    with pytest.raises(ValueError, match="multiple of the backbone's stride 4"):
        model(torch.randn(2, 3, 18, 18))


def test_training_lowers_the_loss_and_logs_a_reconstruction_grid(image_tree, tmp_path):
    pl.seed_everything(0)
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0, train_augment="none")
    model = AutoencoderPretraining(small_encoder(), corruption="mask", loss="l1", num_grid_images=4)
    trainer = pl.Trainer(max_epochs=6, logger=CSVLogger(tmp_path), enable_progress_bar=False, enable_checkpointing=False)
    trainer.validate(model, datamodule=dm)
    before = trainer.callback_metrics["val/loss"].item()
    trainer.fit(model, datamodule=dm)
    assert trainer.callback_metrics["val/loss"].item() < 0.8 * before
    assert "val/recon_mse" in trainer.callback_metrics
    grids = sorted((tmp_path / "lightning_logs").glob("version_*/images/val_reconstructions_step*.png"))
    assert len(grids) == 7  # trainer.validate + one per epoch (the sanity check logs none)


@pytest.mark.parametrize("kwargs, message", [
    ({"corruption": "blur"}, "model.corruption must be"),
    ({"mask_ratio": 1.0}, "model.mask_ratio must be in"),
    ({"loss": "huber"}, "model.loss must be"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoencoderPretraining(small_encoder(), **kwargs)
