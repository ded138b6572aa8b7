"""One ``last.ckpt`` per run: ModelCheckpoint callbacks never write ``last-v1.ckpt`` beside an earlier run's."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from conftest import small_encoder
from ptft.data import ImageFolderDataModule
from ptft.errors import ConfigError
from ptft.tasks import AutoencoderPretraining


def fit(image_tree: Path, root: Path, max_steps: int, ckpt_path: Path | None = None) -> None:
    """A tiny run without a logger, with one ModelCheckpoint saving ``last`` (as the fine-tuning configs)."""
    data = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    trainer = pl.Trainer(max_steps=max_steps, logger=False, default_root_dir=root, callbacks=[ModelCheckpoint(save_last=True)],
                         limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(AutoencoderPretraining(small_encoder(), num_grid_images=0), datamodule=data, ckpt_path=ckpt_path)


def test_runs_without_a_logger_sharing_a_folder_never_write_last_v1(image_tree, tmp_path):
    folder = tmp_path / "shared" / "checkpoints"
    fit(image_tree, tmp_path / "shared", max_steps=1)
    with pytest.raises(ConfigError, match=rf"{folder / 'last.ckpt'}: the last checkpoint of an earlier run is in this run's checkpoint "
                                          r"folder; continue that run with --ckpt_path last, or give this run its own folder"):
        fit(image_tree, tmp_path / "shared", max_steps=1)  # a fresh run: Lightning would write last-v1.ckpt
    fit(image_tree, tmp_path / "shared", max_steps=2, ckpt_path=folder / "last.ckpt")  # a resumed run continues last.ckpt
    assert sorted(path.name for path in folder.glob("last*")) == ["last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2
