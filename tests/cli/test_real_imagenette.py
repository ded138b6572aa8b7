"""Integration on a few hundred real Imagenette images (skipped without $PTFT_DATA/imagenette)."""

import math

import torch

from helpers import CONFIGS, checkpoint_from, run_ptft

SUBSET = ["--data.label_fraction=0.03", "--data.batch_size=32", "--data.num_workers=1", "--trainer.limit_val_batches=2",
          "--trainer.enable_progress_bar=false", "--trainer.logger=pytorch_lightning.loggers.CSVLogger"]


def test_autoencoder_then_linear_probe_on_real_images(imagenette, tmp_path):
    data = [f"--data.root={imagenette}", *SUBSET]
    result = run_ptft("fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), "-c",
                      str(CONFIGS / "pretrain/denoising_autoencoder_imagenette.yaml"), *data, "--trainer.max_steps=8", "--trainer.log_every_n_steps=1",
                      f"--trainer.logger.save_dir={tmp_path / 'pre'}", cwd=tmp_path)
    checkpoint = checkpoint_from(result)
    rows = [r.split(",") for r in next((tmp_path / "pre").glob("lightning_logs/version_0/metrics.csv")).read_text().splitlines()]
    train_losses = [float(r[rows[0].index("train/loss")]) for r in rows[1:] if r[rows[0].index("train/loss")]]
    val_loss = float(rows[-1][rows[0].index("val/loss")])
    assert len(train_losses) == 8 and all(math.isfinite(x) for x in train_losses) and math.isfinite(val_loss)
    assert min(train_losses[-3:]) < train_losses[0]  # it learns
    assert list((tmp_path / "pre").glob("lightning_logs/version_0/images/val_reconstructions_step8.png"))

    run_ptft("export", checkpoint, str(tmp_path / "export"), cwd=tmp_path)
    result = run_ptft("fit", "-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), *data, "--trainer.max_epochs=2",
                      f"--model.pretrained={tmp_path / 'export'}", f"--trainer.logger.save_dir={tmp_path / 'probe'}", cwd=tmp_path)
    state = torch.load(checkpoint_from(result), weights_only=True)
    assert state["hyper_parameters"]["num_classes"] == 10  # linked from the DataModule
    assert state["ptft"]["modules"]["backbone"]["class_path"] == "ptft.backbones.dcgan.DCGANEncoder"


def test_gan_on_real_images_then_samples(imagenette, tmp_path):
    result = run_ptft("fit", "-c", str(CONFIGS / "pretrain/gan_imagenette.yaml"), f"--data.root={imagenette}", *SUBSET,
                      "--data.image_size=32", "--model.backbone.init_args.base_width=16", "--model.generator_width=16",
                      "--model.num_grid_images=16", "--trainer.max_steps=20", "--trainer.limit_val_batches=2",
                      "--trainer.log_every_n_steps=1", f"--trainer.logger.save_dir={tmp_path / 'gan'}", cwd=tmp_path)
    rows = [r.split(",") for r in next((tmp_path / "gan").glob("lightning_logs/version_0/metrics.csv")).read_text().splitlines()]
    for key in ("train/d_loss", "train/g_loss", "val/d_real", "val/d_fake"):
        values = [float(r[rows[0].index(key)]) for r in rows[1:] if r[rows[0].index(key)]]
        assert values and all(math.isfinite(v) for v in values), key
    assert list((tmp_path / "gan").glob("lightning_logs/version_0/images/val_samples_step*.png"))
    run_ptft("sample", checkpoint_from(result), "--num", "5", "--out", str(tmp_path / "samples"), cwd=tmp_path)
    assert len(list((tmp_path / "samples").glob("sample_*.png"))) == 5


def test_mae_on_real_images(imagenette, tmp_path):
    vit = ["--model.backbone.init_args.image_size=32", "--model.backbone.init_args.patch_size=4", "--model.backbone.init_args.depth=2",
           "--model.backbone.init_args.width=64", "--model.backbone.init_args.heads=2", "--model.decoder_width=32", "--model.decoder_depth=1"]
    run_ptft("fit", "-c", str(CONFIGS / "pretrain/mae_imagenette.yaml"), f"--data.root={imagenette}", *SUBSET, *vit,
             "--data.image_size=32", "--trainer.max_steps=10", "--trainer.log_every_n_steps=1", "--trainer.limit_val_batches=2",
             "--model.lr_scheduler.init_args.warmup_fraction=0.2",
             f"--trainer.logger.save_dir={tmp_path / 'mae'}", cwd=tmp_path)
    rows = [r.split(",") for r in next((tmp_path / "mae").glob("lightning_logs/version_0/metrics.csv")).read_text().splitlines()]
    losses = [float(r[rows[0].index("train/loss")]) for r in rows[1:] if r[rows[0].index("train/loss")]]
    assert len(losses) == 10 and all(math.isfinite(x) for x in losses) and min(losses[-3:]) < losses[0]
    assert list((tmp_path / "mae").glob("lightning_logs/version_0/images/val_reconstructions_step*.png"))
