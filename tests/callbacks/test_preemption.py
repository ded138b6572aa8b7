"""One ``last.ckpt`` per run: ModelCheckpoint callbacks never write ``last-v1.ckpt`` beside an earlier run's."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from conftest import small_encoder
from ptft.data import ImageFolderDataModule
from ptft.errors import ConfigError
from ptft.tasks import AutoencoderPretraining
from reliability_callbacks import KillAt


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


def test_a_run_resumed_from_a_sigterm_checkpoint_saved_before_any_step_checkpoint_continues_its_last_ckpt(image_tree, tmp_path):
    """SIGTERM in step 2 saves last.ckpt before ModelCheckpoint's first save (step 4): the resumed run's
    save at step 4 wrote last-v1.ckpt beside it (the DDP resume "that did not train"), as the
    ModelCheckpoint state saved in last.ckpt did not name last.ckpt as its last checkpoint."""
    folder = tmp_path / "ckpt"

    def run(max_steps: int, *callbacks: pl.Callback, ckpt_path: Path | None = None) -> None:
        data = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
        trainer = pl.Trainer(max_steps=max_steps, logger=False, default_root_dir=tmp_path, limit_val_batches=0, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[ModelCheckpoint(dirpath=folder, save_last=True, every_n_train_steps=4), *callbacks])
        trainer.fit(AutoencoderPretraining(small_encoder(), num_grid_images=0), datamodule=data, ckpt_path=ckpt_path)

    with pytest.raises(SIGTERMException):
        run(10, KillAt(step=1, signal_name="SIGTERM"))  # noted in step 2, acted on at its end
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2
    run(4, ckpt_path=folder / "last.ckpt")
    assert sorted(path.name for path in folder.glob("last*")) == ["last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 4
