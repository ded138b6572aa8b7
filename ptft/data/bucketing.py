"""Duration-bucketed training batches: little padding, still resumable and DDP-safe.

:class:`BucketSampler` is a :class:`~ptft.data.resumable.ResumableSampler` (so Lightning leaves it
alone under DDP) whose items are whole batches of :class:`~ptft.data.resumable.SeededSamples` keys:

* each rank takes its shard of the epoch's ``(seed, epoch)`` shuffle, padded (with repeats, as
  DistributedSampler pads) to a whole number of batches per rank, so every rank has the same
  number of batches and DDP never waits on a rank that has run out;
* the shard is cut into pools of ``batch_size * pool_batches`` utterances, each pool is sorted by
  duration and cut into batches of exactly ``batch_size``;
* the batch order is shuffled by ``(seed, epoch)``, and a resumed epoch skips the batches already
  handed out (:class:`~ptft.data.resumable.ResumableLoader` with ``batch_size=None``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ptft.data.resumable import ResumableLoader, ResumableSampler, SeededSamples, global_seed, loader_over, shard_of


class BucketSampler(ResumableSampler):
    """Batches (lists of keys) of utterances of similar ``durations``, ``len()`` batches per rank
    and epoch; see the module docstring."""

    def __init__(self, dataset: Dataset, durations: Sequence[float], batch_size: int, pool_batches: int = 50,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.durations = list(durations)
        self.batch_size = batch_size
        self.pool_size = batch_size * pool_batches
        self.num_samples = math.ceil(len(self.durations) / (batch_size * num_replicas)) * batch_size  # per rank
        self.total_size = self.num_samples * num_replicas

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def epoch_items(self, keys: list[int]) -> list[list[int]]:
        size = len(self.durations)
        batches = []
        for start in range(0, len(keys), self.pool_size):
            pool = sorted(keys[start:start + self.pool_size], key=lambda key: self.durations[key % size])
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        generator = torch.Generator().manual_seed((self.seed + self.epoch) * 1_000_003 + 1)  # not the shard shuffle's seed
        order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in order]


class BatchedSamples(Dataset):
    """``samples`` addressed by a list of keys: one batch's samples, for a DataLoader with
    ``batch_size=None`` whose ``collate_fn`` then collates them."""

    def __init__(self, samples: SeededSamples) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, keys: list[int]) -> list[Any]:
        return [self.samples[key] for key in keys]


def bucketed_loader(dataset: Dataset, durations: Sequence[float], batch_size: int, num_workers: int, trainer: Any = None,
                    collate_fn: Callable | None = None, pool_batches: int = 50) -> ResumableLoader:
    """The shuffled, duration-bucketed training loader of ``dataset`` for this rank of ``trainer``."""
    seed = global_seed()
    world_size, rank = shard_of(trainer)
    samples = SeededSamples(dataset, seed)
    sampler = BucketSampler(samples, durations, batch_size, pool_batches, num_replicas=world_size, rank=rank, seed=seed)
    return loader_over(BatchedSamples(samples), sampler, num_workers, trainer, batch_size=None, collate_fn=collate_fn)
