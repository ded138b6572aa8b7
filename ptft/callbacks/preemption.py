"""Save ``last.ckpt`` when the run is preempted (SIGTERM), so it continues from that batch."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ptft.errors import ConfigError


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    """Where ModelCheckpoint keeps ``last.ckpt`` (``<default_root_dir>/checkpoints`` without one)."""
    callback = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)), None)
    if callback is not None and callback.dirpath:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


def check_one_last_checkpoint(trainer: pl.Trainer) -> None:
    """Refuses ModelCheckpoint callbacks that would write several ``last`` files into one folder:
    Lightning names the second ``last-v1.ckpt``, and which one is the newest is then anyone's guess.
    Callbacks sharing a folder may all ``save_last`` with ``enable_version_counter=False``: they then
    write one ``last.ckpt``, the newest state of the run."""
    folders: dict[str | None, list[ModelCheckpoint]] = {}
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.save_last:
            folders.setdefault(callback.dirpath, []).append(callback)
    for dirpath, callbacks in folders.items():
        if len(callbacks) > 1 and any(callback._enable_version_counter for callback in callbacks):
            folder = dirpath or "the run's checkpoints folder"
            raise ConfigError(
                f"trainer.callbacks: {len(callbacks)} ModelCheckpoint callbacks save_last into {folder}, so Lightning would "
                "write last.ckpt and last-v1.ckpt and `last` would be ambiguous; set enable_version_counter: false on each "
                "(they then share one last.ckpt, the newest state) or save_last: true on one only"
            )


def check_no_earlier_last_checkpoint(trainer: pl.Trainer) -> None:
    """Refuses a fresh run (no ``ckpt_path``) whose ModelCheckpoint would save ``last`` into a folder
    holding the last checkpoint of an earlier run (runs without a logger sharing a
    ``default_root_dir``, a fixed ``dirpath``): Lightning would write ``last-v1.ckpt`` beside it (or
    replace it, without a version counter). A run that resumes a checkpoint continues its ``last.ckpt``."""
    if trainer.ckpt_path is not None:
        return
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
            name = f"{callback.CHECKPOINT_NAME_LAST}*{callback.FILE_EXTENSION}"
            earlier = sorted(Path(callback.dirpath).glob(name))
            if earlier:
                raise ConfigError(
                    f"{earlier[0]}: the last checkpoint of an earlier run is in this run's checkpoint folder; continue that run "
                    "with --ckpt_path last, or give this run its own folder (a logger, or another trainer.default_root_dir)"
                )


class PreemptionCheckpoint(pl.Callback):
    """On SIGTERM, save ``last.ckpt`` after the current batch (every rank takes part; rank 0
    writes), so ``ptft fit ... --ckpt_path last`` continues from that batch. The ``ptft`` command
    then exits with code 143. Other exceptions save nothing: the last periodic checkpoint stays.
    At setup it checks that the run writes one ``last.ckpt`` (:func:`check_one_last_checkpoint`), and
    at fit start that a fresh run writes it into a folder of its own (:func:`check_no_earlier_last_checkpoint`).
    Every ptft task adds it."""

    def __init__(self) -> None:
        self.saved_path: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            check_one_last_checkpoint(trainer)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_no_earlier_last_checkpoint(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        self.saved_path = path
        exception.ptft_checkpoint = str(path)  # type: ignore[attr-defined]  # the CLI reports it
