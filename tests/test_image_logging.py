import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from ptft.image_logging import log_image


def grey_gradient():
    """A (3, 8, 16) image in [0, 1]: a left-to-right gradient."""
    return torch.linspace(0, 1, 16).expand(3, 8, 16).clone()


def test_wandb_gets_the_pixels_not_a_black_image(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    import wandb

    trainer = pl.Trainer(logger=WandbLogger(save_dir=tmp_path, offline=True), default_root_dir=tmp_path)
    log_image(trainer, "val/samples", grey_gradient())
    wandb.finish()
    (png,) = tmp_path.glob("wandb/offline-run-*/files/media/images/val/samples_*.png")
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert pixels.shape == (8, 16, 3)
    assert pixels[:, 0].max() == 0 and pixels[:, -1].min() == 255 and abs(pixels.mean() - 127.5) < 1


def test_csv_logger_gets_a_png(tmp_path):
    trainer = pl.Trainer(logger=CSVLogger(tmp_path), default_root_dir=tmp_path)
    log_image(trainer, "val/samples", grey_gradient())
    (png,) = tmp_path.glob("lightning_logs/version_0/images/val_samples_step0.png")
    assert np.asarray(Image.open(png))[:, -1].min() == 255


@pytest.mark.filterwarnings("ignore")
def test_tensorboard_gets_the_image(tmp_path):
    trainer = pl.Trainer(logger=TensorBoardLogger(tmp_path), default_root_dir=tmp_path)
    log_image(trainer, "val/samples", grey_gradient())
    trainer.logger.experiment.flush()
    assert list(tmp_path.glob("lightning_logs/version_0/events.out.tfevents.*"))
