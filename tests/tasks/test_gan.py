import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from ptft.backbones import DCGANEncoder, ResNet
from ptft.backbones.base import Backbone
from ptft.data import ImageFolderDataModule
from ptft.errors import DivergenceError
from ptft.handoff import export_backbone
from ptft.tasks import Classification, GANPretraining
from ptft.tasks.gan import load_generator


def critic_trunk(norm="none"):
    return DCGANEncoder(base_width=8, num_layers=2, norm=norm)  # 16 px -> 4x4 map


def gan(backbone=None, **kwargs):
    kwargs = {"image_size": 16, "latent_dim": 16, "generator_width": 8, "num_grid_images": 4, **kwargs}
    return GANPretraining(backbone or critic_trunk(), **kwargs)


def fit(model, tree, tmp_path, **trainer_kwargs):
    pl.seed_everything(0)
    dm = ImageFolderDataModule(root=str(tree), image_size=16, batch_size=8, num_workers=0)
    trainer_kwargs = {"max_steps": 6, "logger": CSVLogger(tmp_path), "enable_progress_bar": False,
                      "enable_checkpointing": False, "default_root_dir": tmp_path, "log_every_n_steps": 1, **trainer_kwargs}
    trainer = pl.Trainer(**trainer_kwargs)
    trainer.fit(model, datamodule=dm)
    return trainer


class NoDownsampling(Backbone):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dropout = torch.nn.Identity()
        self.out_dim = self.feature_channels = 8
        self.feature_stride = 1

    def forward_features(self, x):
        return self.conv(x)


@pytest.mark.parametrize("make, message", [
    (lambda: gan(n_critic=0), "model.n_critic must be an integer >= 1"),
    (lambda: gan(image_size=48), "cannot produce 48 px images"),
    (lambda: gan(NoDownsampling()), "no spatially downsampled feature map"),
    (lambda: gan(ResNet(), image_size=16), "not a multiple of the backbone's stride 32"),
    (lambda: gan(loss="lsgan"), "model.loss must be one of non_saturating, hinge, wgan_gp"),
    (lambda: gan(ema_decay=1.0), "model.ema_decay must be in"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_data_of_another_size_is_refused(image_tree):
    with pytest.raises(ValueError, match="data.image_size=32 but model.image_size=16"):
        gan().check_data(ImageFolderDataModule(root=str(image_tree), image_size=32).spec)


@pytest.mark.parametrize("loss, backbone, extra", [
    ("hinge", lambda: critic_trunk(), {"spectral_norm": True, "r1_gamma": 1.0}),
    ("non_saturating", lambda: critic_trunk("batch"), {}),
    ("wgan_gp", lambda: critic_trunk("group"), {"n_critic": 2}),
    ("hinge", lambda: ResNet(small_images=True), {"spectral_norm": True}),  # the ResNet trunk works as a critic too
])
def test_training_is_finite_logs_samples_and_hands_the_trunk_to_fine_tuning(image_tree, tmp_path, loss, backbone, extra):
    model = gan(backbone(), loss=loss, **extra)
    trainer = fit(model, image_tree, tmp_path, enable_checkpointing=True, max_steps=6)
    metrics = trainer.callback_metrics
    for key in ("train/d_loss", "train/g_loss", "val/d_loss", "val/d_real", "val/d_fake"):
        assert math.isfinite(metrics[key].item()), key
    assert list(tmp_path.glob("lightning_logs/version_0/images/val_samples_step*.png"))
    export = export_backbone(trainer.checkpoint_callback.best_model_path, tmp_path / "export")
    probe = Classification(num_classes=3, pretrained=str(export), mode="linear_probe")
    assert type(probe.backbone) is type(model.backbone)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    model.backbone.eval(), probe.backbone.eval()
    with torch.no_grad():  # the exported trunk computes what the (spectral-normalised) discriminator computed
        torch.testing.assert_close(probe.backbone.forward_features(images), model.backbone.forward_features(images))


def test_spectral_norm_bounds_every_discriminator_layer():
    model = gan(spectral_norm=True)
    images = torch.randn(4, 3, 16, 16)
    for _ in range(30):  # power iterations converge during forward passes in train mode
        model.critic(images)
    layers = [m for m in [*model.backbone.modules(), *model.critic_head.modules()] if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 3
    for layer in layers:
        assert torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_n_critic_steps_per_generator_step_and_the_count_resumes(image_tree, tmp_path):
    model = gan(n_critic=3)
    trainer = fit(model, image_tree, tmp_path, max_steps=8, enable_checkpointing=True)  # 6 critic + 2 generator steps
    discriminator_optimizer, generator_optimizer = trainer.optimizers
    step = lambda optimizer: max(int(s["step"]) for s in optimizer.state.values())  # noqa: E731
    assert (step(discriminator_optimizer), step(generator_optimizer)) == (6, 2)
    resumed = gan(n_critic=3)
    resumed.on_load_checkpoint(torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True))
    assert resumed.critic_steps == 6


def test_the_ema_generator_averages_and_makes_the_samples(image_tree, tmp_path):
    model = gan(ema_decay=0.9)
    trainer = fit(model, image_tree, tmp_path, max_steps=8, enable_checkpointing=True)
    raw = dict(model.generator.named_parameters())
    averaged = dict(model.generator_ema.module.named_parameters())
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)
    latents = torch.randn(3, 16)
    ema = load_generator(trainer.checkpoint_callback.best_model_path)
    with torch.no_grad():
        torch.testing.assert_close(ema(latents), model.generator_ema.module.eval()(latents))
    copy = gan(ema_decay=0.0)
    fit(copy, image_tree, tmp_path / "copy", max_steps=4)
    for name, parameter in copy.generator.named_parameters():
        assert torch.equal(parameter, dict(copy.generator_ema.module.named_parameters())[name])


class PoisonCritic(pl.Callback):
    """Sets the critic head to NaN before batch ``at`` (global step 2 * at with n_critic 1)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.at:
            with torch.no_grad():
                pl_module.critic_head.linear.weight.fill_(float("nan"))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(image_tree, tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_last=True)
    with pytest.raises(DivergenceError, match=r"train/d_loss is not finite \(nan\) at step 4, epoch 0"):
        fit(gan(), image_tree, tmp_path, max_steps=20, enable_checkpointing=True, callbacks=[checkpoints, PoisonCritic(at=2)])
    saved = torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)
    assert saved["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_fid_and_kid_are_logged_each_validation_epoch_and_kept_out_of_checkpoints(image_tree, tmp_path):
    extractor = GANPretraining(critic_trunk(), image_size=16, latent_dim=16, generator_width=8)
    torch.save({"state_dict": extractor.state_dict(), "ptft": {"backbone": extractor.backbone.spec()}}, tmp_path / "x.ckpt")
    model = gan(fid_extractor=str(tmp_path / "x.ckpt"), kid_subset_size=10)
    trainer = fit(model, image_tree, tmp_path, max_steps=12, enable_checkpointing=True)  # 2 epochs of 3 batches
    assert math.isfinite(trainer.callback_metrics["val/fid"].item()) and trainer.callback_metrics["val/fid"].item() > 0
    assert math.isfinite(trainer.callback_metrics["val/kid"].item())
    assert int(model.metrics.fid.real_features_num_samples) == 24  # the real split was encoded once, not per epoch
    saved = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert not [k for k in saved["state_dict"] if k.startswith("metrics.")]
    GANPretraining.load_from_checkpoint(trainer.checkpoint_callback.best_model_path, backbone=critic_trunk(), weights_only=True)


def test_resuming_restores_both_optimizers_the_ema_and_the_critic_count(image_tree, tmp_path):
    first = fit(gan(), image_tree, tmp_path, max_steps=6, enable_checkpointing=True)  # 3 batches: 3 D + 3 G steps
    model = gan()
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    trainer = pl.Trainer(max_steps=10, logger=False, enable_progress_bar=False, default_root_dir=tmp_path / "resumed")
    trainer.fit(model, datamodule=dm, ckpt_path=first.checkpoint_callback.best_model_path)
    discriminator_optimizer, generator_optimizer = trainer.optimizers
    steps = [max(int(s["step"]) for s in optimizer.state.values()) for optimizer in (discriminator_optimizer, generator_optimizer)]
    assert steps == [5, 5] and model.critic_steps == 5
    assert int(model.generator_ema.n_averaged) == 5
