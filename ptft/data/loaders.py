"""The evaluation DataLoader every DataModule uses (training uses :mod:`ptft.data.resumable`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ptft.data.resumable import own_generator


def evaluation_loader(dataset: Dataset, batch_size: int, num_workers: int, collate_fn: Callable | None = None,
                      sampler: Sampler | None = None, persistent_workers: bool = True) -> DataLoader:
    """``dataset`` in order (or in ``sampler``'s order), every sample once; persistent workers
    (for a loader Lightning reuses every epoch) and pinned memory for a GPU; its own generator, so
    starting it draws nothing from the training's random stream."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
                      persistent_workers=persistent_workers and num_workers > 0, pin_memory=torch.cuda.is_available(),
                      generator=own_generator())
