"""Log an image (a grid of samples or reconstructions) to whichever loggers the trainer has."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import save_image


def log_image(trainer: pl.Trainer, key: str, image: torch.Tensor) -> None:
    """Log a ``(3, H, W)`` float image in [0, 1] under ``key`` at the current global step.

    W&B and TensorBoard get it natively; other loggers (CSV) get a PNG in ``<log_dir>/images/``.
    """
    if not trainer.is_global_zero:
        return
    image = image.detach().float().clamp(0, 1).cpu()
    step = trainer.global_step
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):  # as uint8 HWC: W&B reads float arrays as 0-255 values
            pixels = image.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            logger.log_image(key=key, images=[pixels], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, step)
        else:
            folder = Path(getattr(logger, "log_dir", None) or trainer.default_root_dir) / "images"
            folder.mkdir(parents=True, exist_ok=True)
            save_image(image, folder / f"{key.replace('/', '_')}_step{step}.png")
