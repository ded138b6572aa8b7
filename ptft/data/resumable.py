"""A training DataLoader that resumes mid-epoch where it stopped, with the same augmentations.

Lightning stores the state of a train DataLoader that has ``state_dict`` / ``load_state_dict``
in every checkpoint and hands it back on ``--ckpt_path`` before the first batch is drawn; with a
plain DataLoader it restarts the epoch's data from its first batch (and warns). Here:

* the order is a function of ``(seed, epoch)`` only (a :class:`DistributedSampler`, also on one
  device, so each rank reads its own shard and Lightning leaves the sampler alone);
* the loader counts the batches it handed out, saves ``(epoch, batches)`` and, on load, skips that
  many batches of the same order;
* with a trainer, an epoch's order is that of ``trainer.current_epoch`` when its first batch is
  drawn, not the epoch Lightning last passed to ``set_epoch``: after a resume from a checkpoint saved
  at an epoch's end, Lightning creates the iterator before it sets the epoch (and with ``max_steps``
  it then passes one epoch too many), so its ``set_epoch`` cannot be trusted there;
* augmentations are seeded per sample from ``(seed, epoch, index)`` (:class:`SeededSamples`), so
  they do not depend on worker processes, on batch positions, or on where a run was resumed, and
  they leave the global random stream (model noise, masks, dropout) untouched;
* the loader has its own ``torch.Generator``, so starting an iterator draws nothing from the
  global stream either.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info


def global_seed() -> int:
    """The seed of ``seed_everything`` (Lightning's DistributedSampler default too)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def own_generator() -> torch.Generator:
    """A DataLoader's own generator: creating an iterator then draws its worker seed from it, not
    from the global stream, so validation or kNN loaders started at different moments (after a
    resume Lightning skips the sanity check) leave the training's randomness unchanged."""
    return torch.Generator().manual_seed(global_seed())


class SeededSamples(Dataset):
    """``dataset`` addressed by keys ``epoch * len(dataset) + index`` (plain indices are epoch 0);
    each sample is loaded with the torch and Python random streams seeded from ``(seed, epoch, index)``."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int) -> Any:
        epoch, index = divmod(int(key), len(self))
        seed = ((self.seed * 1_000_003 + epoch) * 1_000_003 + index) % 2**63
        # Augmentations may draw from Python's random (ptft.data.decoding) or torch's CPU stream.
        # Only the CPU generator is seeded: torch.manual_seed also visits every accelerator backend
        # and costs ~0.2 ms, a fifth of decoding a small JPEG.
        if get_worker_info() is not None:  # a worker's streams serve only its samples: no need to restore them
            random.seed(seed)
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]
        python_state, torch_state = random.getstate(), torch.get_rng_state()
        random.seed(seed)
        torch.default_generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(python_state)
            torch.set_rng_state(torch_state)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled by ``seed + epoch``, padded to equal shards) yielding
    :class:`SeededSamples` keys, able to start an epoch part-way (``resume_at``). An item
    is one key; a subclass may group the keys into batches (:meth:`epoch_items`)."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.resume_at: tuple[int, int] | None = None  # (epoch, items of this rank's epoch to skip)

    def epoch_items(self, keys: list[int]) -> list:
        """What this rank yields this epoch, given its shard's keys in order."""
        return keys

    def __iter__(self):
        # A generator: a multi-process DataLoader calls iter() on its sampler twice when it starts
        # and drops the first; only the iterator actually read may use up ``resume_at``.
        offset = self.epoch * len(self.dataset)  # type: ignore[arg-type]
        items = self.epoch_items([offset + i for i in super().__iter__()])
        if self.resume_at is not None and self.resume_at[0] == self.epoch:
            items = items[self.resume_at[1]:]
            self.resume_at = None
        yield from items


class ResumableLoader(DataLoader):
    """A DataLoader over :class:`SeededSamples` with a :class:`ResumableSampler` whose position
    (epoch, batches handed out) Lightning saves in checkpoints and restores on resume. Each pass draws
    the order of ``trainer.current_epoch`` when ``trainer`` is set, else of the sampler's epoch. With
    ``batch_size=None`` each sampler item is a whole batch (:mod:`ptft.data.bucketing`)."""

    trainer: Any = None

    def __iter__(self):
        def counting():  # a generator: nothing, not even the workers' first indices, is drawn before the first batch
            sampler = self.sampler
            assert isinstance(sampler, ResumableSampler)
            if self.trainer is not None:
                sampler.set_epoch(self.trainer.current_epoch)
            epoch = sampler.epoch
            done = sampler.resume_at[1] // (self.batch_size or 1) if sampler.resume_at and sampler.resume_at[0] == epoch else 0
            self._position = (epoch, done)
            for n, batch in enumerate(DataLoader.__iter__(self), done + 1):
                self._position = (epoch, n)  # Lightning fetches sized loaders without prefetching
                yield batch

        return counting()

    def state_dict(self) -> dict[str, Any]:
        epoch, batches = getattr(self, "_position", (self.sampler.epoch, 0))
        return {"epoch": epoch, "batches": batches, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, batches = state["epoch"], state["batches"]
        if batches >= len(self):  # saved after the epoch's last batch: the next epoch starts afresh
            epoch, batches = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self.sampler.resume_at = (epoch, batches * (state["batch_size"] or 1))


def shard_of(trainer: Any) -> tuple[int, int]:
    """``(world size, rank)`` of ``trainer`` (one device without one)."""
    return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)


def loader_over(samples: Dataset, sampler: ResumableSampler, num_workers: int, trainer: Any = None, **options: Any) -> ResumableLoader:
    """The :class:`ResumableLoader` of ``samples`` in ``sampler``'s order, following ``trainer``'s
    epochs: persistent workers, pinned memory for a GPU, its own generator; ``options`` go to the DataLoader."""
    loader = ResumableLoader(samples, sampler=sampler, num_workers=num_workers, persistent_workers=num_workers > 0,
                             pin_memory=torch.cuda.is_available(), generator=own_generator(), **options)
    loader.trainer = trainer
    return loader


def resumable_loader(dataset: Dataset, batch_size: int, num_workers: int, trainer: Any = None, drop_last: bool = True,
                     collate_fn: Callable | None = None) -> ResumableLoader:
    """The shuffled training loader of ``dataset`` for this rank of ``trainer`` (one device without one),
    whose passes follow ``trainer.current_epoch``."""
    seed = global_seed()
    world_size, rank = shard_of(trainer)
    samples = SeededSamples(dataset, seed)
    sampler = ResumableSampler(samples, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    return loader_over(samples, sampler, num_workers, trainer, batch_size=batch_size, drop_last=drop_last and len(sampler) >= batch_size,
                       collate_fn=collate_fn)
