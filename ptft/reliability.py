"""Checkpoints that survive crashes and preemption, and that load safely.

* :class:`AtomicCheckpointIO`: Lightning's ``TorchCheckpointIO`` writes through an fsspec
  transaction whose temporary file lives in the system temp folder; when that is another file
  system than the checkpoint's (``/tmp`` on local disk, checkpoints on NFS / Lustre), the final
  move is a copy over the old file, and a kill during it leaves a truncated ``last.ckpt``. This one
  writes a temporary file next to the target, fsyncs it and ``os.replace``s it into place, so the
  previous checkpoint stays loadable until the new one is complete. Loads always use
  ``torch.load(weights_only=True)`` (also for ``--ckpt_path``): a checkpoint whose unpickling
  would run code is refused with a :class:`ConfigError`.
* :func:`find_last_checkpoint`: what ``--ckpt_path last`` resumes: the newest last checkpoint of a
  run of the same experiment (:func:`experiment_config`, saved in every checkpoint by the CLI's
  :class:`~ptft.callbacks.ExperimentConfig`).

The callbacks every run gets (RNG states, preemption, the non-finite guard, checkpoint metadata,
and the one installing :class:`AtomicCheckpointIO`) are in :mod:`ptft.callbacks`.
"""

from __future__ import annotations

import errno
import json
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
from ptft.temp_files import temp_path

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: what a shell reports for a process ended by SIGTERM


def atomic_write(path: str | os.PathLike, write: Callable[[Any], Any]) -> None:
    """``write(f)`` (``f``: a file open for binary writing) into a temporary file in the target's
    folder (:func:`~ptft.temp_files.temp_path`), fsync, then ``os.replace``: the target is the old
    file or the whole new one, with the permissions of a normally created file. A full disk
    raises :class:`WriteFailedError` naming the file and the earlier one kept; the temp file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
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


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` with one-line errors naming the file; ``mmap`` maps the
    tensors instead of reading them (to read a checkpoint's metadata)."""
    if not Path(path).is_file():
        raise MissingPathError(f"checkpoint {path} does not exist or is not a file")
    if Path(path).stat().st_size == 0:
        raise ConfigError(f"{path}: not a readable checkpoint (an empty file, 0 bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
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


# What says how long a run trains, where and what it records, and how many loader workers it uses
# (augmentations do not depend on them), not what it computes: a run started again with other
# values here (e.g. a larger max_steps) continues the same experiment.
NOT_THE_EXPERIMENT = ("ckpt_path", "config", "trainer.max_steps", "trainer.max_epochs", "trainer.max_time",
                      "trainer.callbacks", "trainer.logger", "trainer.default_root_dir", "trainer.enable_progress_bar",
                      "trainer.enable_model_summary", "trainer.log_every_n_steps", "data.init_args.num_workers")


def experiment_config(config: dict[str, Any]) -> dict[str, str]:
    """The settings that make a run's experiment: the resolved ``ptft fit`` config (model, data,
    seed, trainer) as ``{dotted key: JSON value}``, without the keys in :data:`NOT_THE_EXPERIMENT`."""
    settings: dict[str, str] = {}

    def visit(key: str, value: Any) -> None:
        if key in NOT_THE_EXPERIMENT:
            return
        if isinstance(value, dict) and value:
            for name, item in value.items():
                visit(f"{key}.{name}" if key else name, item)
        else:
            settings[key] = json.dumps(value, sort_keys=True, default=str)

    visit("", config)
    return settings


def experiment_differences(checkpoint: dict[str, Any], experiment: dict[str, str]) -> list[str] | None:
    """The keys whose values differ between ``experiment`` and the one saved in ``checkpoint``
    (``[]``: the same experiment), or None when the checkpoint records none."""
    saved = checkpoint.get("ptft", {}).get("experiment")
    if saved is None:
        return None
    return sorted(key for key in saved.keys() | experiment.keys() if saved.get(key) != experiment.get(key))


def describe_differences(keys: list[str]) -> str:
    """``another experiment (differs in a, b, c and 2 more)``."""
    shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
    return f"another experiment (differs in {shown})"


def checkpoint_folders(trainer: pl.Trainer) -> list[Path]:
    """Where the runs writing where ``trainer`` writes keep their checkpoints (before ModelCheckpoint
    resolves its folder at setup): ModelCheckpoint folders given by ``dirpath``, else the
    ``<run>/checkpoints`` folders of every run (version) under the logger's ``save_dir/name`` (or
    ``default_root_dir/checkpoints`` without a logger)."""
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
    return folders


def last_checkpoint_candidates(trainer: pl.Trainer) -> list[Path]:
    """The ``last*.ckpt`` of earlier runs writing where ``trainer`` writes (:func:`checkpoint_folders`),
    newest first; SLURM's ``default_root_dir/hpc_ckpt_*.ckpt`` count too."""
    candidates = [path for folder in checkpoint_folders(trainer) for path in folder.glob("last*.ckpt") if path.is_file()]
    candidates += Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt")  # saved by Lightning's SLURM requeue handler
    return sorted(candidates, key=lambda path: path.stat().st_mtime, reverse=True)


def find_last_checkpoint(trainer: pl.Trainer, experiment: dict[str, str]) -> tuple[Path | None, list[str]]:
    """What ``--ckpt_path last`` resumes: the newest of :func:`last_checkpoint_candidates` that
    records the same ``experiment`` (:func:`experiment_config`), or None; and one line for each
    newer candidate skipped (another experiment, none recorded, unreadable) and for the choice."""
    notes = []
    for path in last_checkpoint_candidates(trainer):
        try:
            checkpoint = safe_torch_load(path, mmap=True)
        except (ConfigError, MissingPathError) as error:  # unreadable, or removed since the listing
            notes.append(f"skipped {path}: {error}")
            continue
        differences = experiment_differences(checkpoint, experiment)
        if differences is None:
            notes.append(f"skipped {path}: it records no experiment (saved outside `ptft fit` or by an older ptft); "
                         "pass its path to resume it anyway")
        elif differences:
            notes.append(f"skipped {path}: {describe_differences(differences)}")
        else:
            notes.append(f"resuming from {path}: the newest last checkpoint of this experiment (global step {checkpoint.get('global_step')})")
            return path, notes
    notes.append("no checkpoint of this experiment (same config and overrides) found; starting from scratch")
    return None, notes
