"""Checkpoints that survive crashes and preemption, and that load safely.

* :class:`AtomicCheckpointIO`: Lightning's ``TorchCheckpointIO`` writes through an fsspec
  transaction whose temporary file lives in the system temp folder; when that is another file
  system than the checkpoint's (``/tmp`` on local disk, checkpoints on NFS / Lustre), the final
  move is a copy over the old file, and a kill during it leaves a truncated ``last.ckpt``. This one
  writes a temporary file next to the target, fsyncs it and ``os.replace``s it into place, so the
  previous checkpoint stays loadable until the new one is complete. Loads always use
  ``torch.load(weights_only=True)`` (also for ``--ckpt_path``): a checkpoint whose unpickling
  would run code is refused with a :class:`ConfigError`.
* :func:`find_last_checkpoint`: what ``--ckpt_path last`` resumes.

The callbacks every run gets (RNG states, preemption, the non-finite guard, checkpoint metadata,
and the one installing :class:`AtomicCheckpointIO`) are in :mod:`ptft.callbacks`.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from ptft.errors import ConfigError, MissingPathError, WriteFailedError

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: what a shell reports for a process ended by SIGTERM


def atomic_write(path: str | os.PathLike, write: Callable[[Any], Any]) -> None:
    """``write(f)`` (``f``: a file open for binary writing) into a temporary file in the target's
    folder, fsync, then ``os.replace``: the target is the old file or the whole new one. A full disk
    raises :class:`WriteFailedError` naming the file and the earlier one kept; the temp file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    had_previous = path.is_file()
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        why = full_disk(error)
        if why is None:
            raise
        kept = f"the previous {path} is intact" if had_previous else "there was no earlier file at that path"
        raise WriteFailedError(f"could not write {path}: {why}; {kept}; the partial new file was removed") from error
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
# What torch.save's zip writer raises when a write comes up short (a full disk), e.g.
# "[enforce fail at inline_container.cc:672] . unexpected pos 1216 vs 1114" or "... file write failed".
TORCH_WRITE_FAILED = re.compile(r"inline_container|PytorchStreamWriter failed|unexpected pos|file write failed")


def full_disk(error: BaseException) -> str | None:
    """Why ``error`` stopped a write when it is a full disk (or torch's short-write error), else None."""
    if isinstance(error, OSError) and error.errno in SPACE_ERRNOS:
        return f"the disk is full ({os.strerror(error.errno)})"
    if isinstance(error, RuntimeError) and TORCH_WRITE_FAILED.search(str(error)):
        return f"the write failed, most likely a full disk ({' '.join(first_line(error).split())[:200]})"
    return None


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with one-line errors naming the file."""
    if not Path(path).is_file():
        raise MissingPathError(f"checkpoint {path} does not exist or is not a file")
    if Path(path).stat().st_size == 0:
        raise ConfigError(f"{path}: not a readable checkpoint (an empty file, 0 bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ConfigError(
            f"{path}: refusing to load: not a plain checkpoint of tensors and values, so it could run code "
            f"when unpickled (weights_only=True): {first_line(error)}"
        ) from None
    except (RuntimeError, EOFError) as error:
        raise ConfigError(f"{path}: not a readable checkpoint ({first_line(error)})") from None


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its class name when the message is empty (a
    truncated file's ``EOFError``)."""
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Local checkpoints written atomically (temp file in the same folder + fsync + os.replace)
    and read with ``weights_only=True``; remote (fsspec URL) paths fall back to Lightning's."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location: Callable | None = lambda storage, loc: storage, weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only=True)
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        return safe_torch_load(path, map_location)


def find_last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The newest ``last*.ckpt`` of earlier runs writing where ``trainer`` writes: ModelCheckpoint
    folders given by ``dirpath``, else the ``<run>/checkpoints`` folders of every run (version)
    under the logger's ``save_dir/name`` (or ``default_root_dir/checkpoints`` without a logger);
    SLURM's ``default_root_dir/hpc_ckpt_*.ckpt`` count too."""
    folders: list[Path] = []
    automatic = False
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint):
            if callback.dirpath:
                folders.append(Path(callback.dirpath))
            else:
                automatic = True
    if automatic:
        logger = trainer.logger
        if logger is not None and logger.save_dir:
            base = Path(logger.save_dir) / str(logger.name) if logger.name else Path(logger.save_dir)
            folders += base.glob("*/checkpoints")
        else:
            folders.append(Path(trainer.default_root_dir) / "checkpoints")
    candidates = [path for folder in folders for path in folder.glob("last*.ckpt") if path.is_file()]
    candidates += Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt")  # saved by Lightning's SLURM requeue handler
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None
