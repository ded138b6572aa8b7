import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from ptft.backbones import DCGANEncoder, ViT
from ptft.data import ImageFolderDataModule
from ptft.pretext.masking import patchify, random_masking, unpatchify
from ptft.tasks import MaskedAutoencoderPretraining
from ptft.tasks.mae import masked_patch_loss


def tiny_mae(**kwargs):
    vit = ViT(image_size=16, patch_size=4, depth=1, width=32, heads=2)
    return MaskedAutoencoderPretraining(vit, decoder_width=32, decoder_depth=1, decoder_heads=2, num_grid_images=4, **kwargs)


def test_masking_keeps_exactly_the_requested_patches_with_a_mask_per_sample():
    keep, restore, mask = random_masking(64, 16, 0.75, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (64, 4) and mask.shape == (64, 16)
    assert (mask.sum(1) == 12).all()  # exactly 12 of 16 hidden in every sample
    assert all(len(set(row.tolist())) == 4 for row in keep)
    assert len({tuple(sorted(row.tolist())) for row in keep}) > 50  # masks differ between samples
    visible = torch.zeros(64, 16).scatter_(1, keep, 1.0)
    assert torch.equal(visible, 1 - mask)  # the mask is the complement of the kept patches


def test_unshuffling_restores_the_image_order():
    batch, n = 5, 16
    keep, restore, _ = random_masking(batch, n, 0.5, generator=torch.Generator().manual_seed(1))
    tokens = torch.arange(n).float().expand(batch, n)
    order = torch.argsort(restore, dim=1)  # = the shuffled order: kept patches first
    shuffled = torch.gather(tokens, 1, order)
    assert torch.equal(shuffled[:, : keep.shape[1]], keep.float())
    assert torch.equal(torch.gather(shuffled, 1, restore), tokens)


def test_patchify_round_trip():
    images = torch.randn(2, 3, 16, 24)
    patches = patchify(images, 4)
    assert patches.shape == (2, 24, 48)
    assert torch.equal(patches[0, 1], images[0, :, 0:4, 4:8].permute(1, 2, 0).reshape(-1))
    assert torch.equal(unpatchify(patches, 4, (4, 6)), images)


def test_the_loss_only_sees_hidden_patches():
    target = torch.randn(2, 8, 12)
    mask = torch.tensor([[1.0, 0, 1, 0, 0, 0, 1, 1]] * 2)
    prediction = torch.randn(2, 8, 12)
    changed_visible = prediction.clone()
    changed_visible[:, 1] += 100  # visible patches: anything may be predicted there
    for norm_pix in (False, True):
        assert masked_patch_loss(prediction, target, mask, norm_pix) == masked_patch_loss(changed_visible, target, mask, norm_pix)
    exact = target.clone()
    assert masked_patch_loss(exact, target, mask, False) == 0


def test_training_lowers_the_loss_and_logs_a_grid(image_tree, tmp_path):
    pl.seed_everything(0)
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0, train_augment="none")
    model = tiny_mae(norm_pix_loss=False, optimizer=lambda p: torch.optim.AdamW(p, lr=2e-3))
    trainer = pl.Trainer(max_epochs=8, logger=CSVLogger(tmp_path), enable_progress_bar=False, enable_checkpointing=False)
    trainer.validate(model, datamodule=dm)
    before = trainer.callback_metrics["val/loss"].item()
    trainer.fit(model, datamodule=dm)
    assert trainer.callback_metrics["val/loss"].item() < 0.5 * before
    assert list(tmp_path.glob("lightning_logs/version_*/images/val_reconstructions_step*.png"))


@pytest.mark.parametrize("make, message", [
    (lambda: tiny_mae(mask_ratio=1.0), r"model.mask_ratio must be in \(0, 1\)"),
    (lambda: tiny_mae(mask_ratio=0.0), r"model.mask_ratio must be in \(0, 1\)"),
    (lambda: MaskedAutoencoderPretraining(DCGANEncoder()), "must be a ptft.backbones.ViT"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_data_size_must_match_the_vit(image_tree):
    with pytest.raises(ValueError, match="data.image_size=32 but the ViT backbone has image_size=16"):
        tiny_mae().check_data(ImageFolderDataModule(root=str(image_tree), image_size=32).spec)


def test_a_batch_with_no_hidden_patch_gives_loss_zero_reaching_every_parameter():
    prediction = torch.randn(2, 16, 48, requires_grad=True)
    for norm in (True, False):
        loss = masked_patch_loss(prediction, torch.randn(2, 16, 48), torch.zeros(2, 16), norm)
        assert loss.item() == 0
    model = tiny_mae(mask_ratio=0.01)  # round(16 * 0.99) = 16 visible: nothing hidden
    loss, _, mask = model(torch.rand(2, 3, 16, 16) * 2 - 1, torch.Generator().manual_seed(0))
    assert mask.sum() == 0 and loss.item() == 0
    loss.backward()
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters() if p.requires_grad)
