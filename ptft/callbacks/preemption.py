"""Save ``last.ckpt`` when the run is preempted (SIGTERM), so it continues from that batch."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.connectors.signal_connector import _SignalConnector
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ptft.errors import ConfigError

_sigterm_noted = False  # process-wide, as signal handlers are: set by note_sigterm, cleared when the ranks act on it


def note_sigterm(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler that only notes the signal (no collective, no I/O; harmless when called
    twice): :class:`PreemptionCheckpoint` acts on it at the end of the step."""
    global _sigterm_noted
    _sigterm_noted = True


@contextlib.contextmanager
def noting_sigterm() -> Iterator[None]:
    """SIGTERM only noted (:func:`note_sigterm`) inside the block. ``ptft fit`` runs in one, so a
    SIGTERM during setup stops the run after its first step and one after training is harmless
    (Lightning installs its handler only just before training). The main thread blocks SIGTERM
    and a helper thread receives it (Python runs the handler in the main thread all the same):
    the processes the main thread starts inherit the block, so a SIGTERM to the process group
    neither kills a DDP rank while Python starts up nor a DataLoader worker."""
    previous = signal.signal(signal.SIGTERM, note_sigterm)
    done = threading.Event()
    receiver = threading.Thread(target=_receive_sigterm, args=(done,), name="ptft-sigterm", daemon=True)
    receiver.start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        for child in multiprocessing.active_children():  # DataLoader workers: they inherited the block, so
            if child.daemon:  # Python's exit, which stops them with SIGTERM and waits, would wait forever
                child.kill()
        done.set()
        receiver.join()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        signal.signal(signal.SIGTERM, previous)


def _receive_sigterm(done: threading.Event) -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked from birth in a DDP rank started by Lightning
    done.wait()


class _NotingSignalConnector(_SignalConnector):
    """Lightning's signal handling, except that while fitting its SIGTERM handler only notes the
    signal. Lightning's own handler broadcasts from inside the handler, so under DDP it deadlocks
    when the signal lands while another rank is in a different collective (gradient all-reduce,
    a checkpoint's barrier), and it forwards the signal to ranks that may get it from the process
    group as well."""

    def _sigterm_notifier_fn(self, signum: int, frame: FrameType | None) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING:
            note_sigterm(signum, frame)
        else:
            super()._sigterm_notifier_fn(signum, frame)


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    """Where ModelCheckpoint keeps ``last.ckpt`` (``<default_root_dir>/checkpoints`` without one)."""
    callback = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)), None)
    if callback is not None and callback.dirpath:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


def save_last_checkpoint(trainer: pl.Trainer) -> Path:
    """Saves the run's state as its ``last.ckpt`` (:func:`last_checkpoint_path`); returns the path.
    First the ``save_last`` ModelCheckpoint callbacks of that folder take it as their
    ``last_model_path``, as they do before their own saves: it is part of the state saved, and a run
    resumed from a ``last.ckpt`` that names no or another last checkpoint (one saved before their
    first save) writes its next one beside it, as ``last-v1.ckpt``, leaving ``last.ckpt`` at the resumed step."""
    path = last_checkpoint_path(trainer)
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath and Path(callback.dirpath) == path.parent:
            callback.last_model_path = str(path)
    trainer.save_checkpoint(path)
    return path


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
    """On SIGTERM, save ``last.ckpt`` after the current step (every rank takes part; rank 0
    writes), so ``ptft fit ... --ckpt_path last`` continues from that step. The ``ptft`` command
    then exits with code 143. Other exceptions save nothing: the last periodic checkpoint stays.

    The signal handler only notes the signal (:func:`note_sigterm`), whichever rank gets it, at any
    moment. At the end of each optimizer step (in ``on_train_batch_end``) the ranks agree whether
    any of them got one: one all-reduce of one integer on a CPU (gloo) group, which every rank
    reaches at the same point, so it cannot interleave with DDP's own collectives. When one did,
    every rank sets Lightning's ``received_sigterm`` and Lightning stops them all after that batch.
    One process needs no agreement. A signal during validation is acted on at the next step.
    At setup it checks that the run writes one ``last.ckpt`` (:func:`check_one_last_checkpoint`), and
    at fit start that a fresh run writes it into a folder of its own (:func:`check_no_earlier_last_checkpoint`).
    Every ptft task adds it."""

    def __init__(self) -> None:
        self.saved_path: Path | None = None
        self._group: Any = None  # the CPU process group the ranks agree in (None: one process)
        self._agreed_at_step = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        check_one_last_checkpoint(trainer)
        if not isinstance(trainer._signal_connector, _NotingSignalConnector):  # before Lightning installs its handler
            trainer._signal_connector = _NotingSignalConnector(trainer)
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1 and self._group is None:
            self._group = dist.new_group(backend="gloo")  # every rank runs setup

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._agreed_at_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self._agreed_at_step:  # no optimizer step since the last agreement (gradient accumulation)
            return
        self._agreed_at_step = trainer.global_step
        if self._any_rank_noted_sigterm():
            trainer._signal_connector.received_sigterm = True  # Lightning's loops stop every rank after this batch

    def _any_rank_noted_sigterm(self) -> bool:
        global _sigterm_noted
        noted = _sigterm_noted
        if self._group is not None:
            flags = torch.tensor([int(noted)])
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self._group)
            noted = bool(flags.item())
        if not noted:
            return False
        _sigterm_noted = False  # acted on
        return True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_no_earlier_last_checkpoint(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        self.saved_path = save_last_checkpoint(trainer)
        exception.ptft_checkpoint = str(self.saved_path)  # type: ignore[attr-defined]  # the CLI reports it
