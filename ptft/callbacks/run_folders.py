"""A run that fails before it starts leaves no run folder: the folders its loggers made are removed."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import warnings
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only


class RunFolders(pl.Callback):
    """Tracks the folders a run's loggers make, so that a run that fails before it starts (before
    training, or before the loop of ``validate``/``test``/``predict``: bad data, a model that cannot
    read it, a schedule longer than the run) leaves no run folder. Made before the run (the ``ptft``
    CLI makes one for every run), it notes what exists; after a failure,
    :meth:`remove_if_not_started` removes only what the run made and never a folder an earlier run made:

    - a logger with a ``log_dir`` (CSVLogger, TensorBoardLogger): its ``version_N`` folder (the
      version is fixed when this tracker is made), and the folders above it (``save_dir/name``,
      ``save_dir``, ...) that the run made and left empty;
    - a WandbLogger: the run is finished, its folder ``<save_dir>/wandb/offline-run-*`` (or ``run-*``)
      removed, W&B's links to the latest run (``latest-run``, ``debug.log``) put back as they were, and
      ``<save_dir>/wandb`` and the folders above it that the run made and left empty (an online run
      stays on the W&B server, marked failed);
    - other loggers are left alone.

    The run's ``config.yaml`` is written only once the run starts (:class:`ptft.cli.RunConfigSaver`).
    Works on global rank zero, the rank that writes these folders.
    """

    def __init__(self, trainer: pl.Trainer) -> None:
        self.started = False
        self._new: set[Path] = set()  # folders the run may make that do not exist yet
        self._log_dirs: list[Path] = []
        self._links: dict[Path, str] = {}  # W&B's links to its latest run, as they were
        if rank_zero_only.rank != 0:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                save_dir = Path(logger.save_dir or ".")
                self._note(save_dir / "wandb")
                if (save_dir / "wandb").is_dir():
                    for entry in (save_dir / "wandb").iterdir():
                        if entry.is_symlink():
                            self._links[entry] = os.readlink(entry)
            elif getattr(logger, "log_dir", None):
                log_dir = Path(logger.log_dir)  # fixes the version
                if not log_dir.exists():
                    self._log_dirs.append(log_dir)
                    self._note(log_dir.parent)

    def _note(self, folder: Path) -> None:
        """``folder`` and its parents up to the first that exists: folders this run may make."""
        while not folder.exists() and folder != folder.parent:
            self._new.add(folder)
            folder = folder.parent

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:  # fit's sanity check comes before training starts
            self.started = True

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = True

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = True

    def remove_if_not_started(self, trainer: pl.Trainer) -> list[Path]:
        """Remove the run's folders unless the run started; returns what was removed. A folder that
        cannot be removed is a warning, so the run's own error stays the one reported."""
        if self.started or rank_zero_only.rank != 0:
            return []
        removed: list[Path] = []
        try:
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    removed += self._remove_wandb_run(logger)
            for log_dir in self._log_dirs:
                if log_dir.is_dir():
                    shutil.rmtree(log_dir)
                    removed.append(log_dir)
            for folder in sorted(self._new, key=lambda p: len(p.parts), reverse=True):  # deepest first
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
                    removed.append(folder)
        except OSError as error:
            warnings.warn(f"could not remove the folders of the run that failed before it started: {error}", stacklevel=2)
        return removed

    def _remove_wandb_run(self, logger: WandbLogger) -> list[Path]:
        run = logger._experiment  # None: no W&B run was started
        if run is None or not getattr(run, "dir", None):
            return []
        wandb_dir = Path(logger.save_dir or ".") / "wandb"
        folder = Path(run.dir).parent  # run.dir is <save_dir>/wandb/<run folder>/files
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            run.finish(exit_code=1)  # quietly: W&B would say how to sync the run this removes
        if not wandb_dir.is_dir() or folder.resolve().parent != wandb_dir.resolve() or not folder.is_dir():
            return []  # not a folder in this logger's save_dir: left alone
        shutil.rmtree(folder)
        for entry in wandb_dir.iterdir():
            if entry.is_symlink() and not entry.exists():  # a link to the removed run: as it was, or gone
                entry.unlink()
                before = self._links.get(entry)
                if before is not None and (wandb_dir / before).exists():
                    os.symlink(before, entry)
        return [folder]
