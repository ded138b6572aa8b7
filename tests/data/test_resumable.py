"""The resumable training loader: per-sample seeded augmentations and mid-epoch resume."""

import random

import torch
from torch.utils.data import Dataset

from ptft.data.resumable import SeededSamples, resumable_loader


class RandomDraws(Dataset):
    """Sample i: its index plus one draw from Python's and one from torch's random stream."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index), random.random(), torch.rand(()).item()], dtype=torch.float64)


def batches(loader) -> list[torch.Tensor]:
    return [batch for batch in loader]


def test_same_key_same_sample_and_global_streams_untouched():
    samples = SeededSamples(RandomDraws(), seed=3)
    random.seed(11)
    torch.manual_seed(11)
    expected_python, expected_torch = random.random(), torch.rand(())
    random.seed(11)
    torch.manual_seed(11)
    first, again = samples[5], samples[5]
    assert torch.equal(first, again)
    assert random.random() == expected_python and torch.equal(torch.rand(()), expected_torch)
    next_epoch = samples[5 + len(samples)]
    assert next_epoch[0] == 5 and not torch.equal(next_epoch, first)  # same image, new augmentation
    assert not torch.equal(SeededSamples(RandomDraws(), seed=4)[5], first)


def test_augmentations_do_not_depend_on_worker_count():
    in_main = batches(resumable_loader(RandomDraws(), batch_size=4, num_workers=0))
    in_workers = batches(resumable_loader(RandomDraws(), batch_size=4, num_workers=2))
    assert len(in_main) == 6
    assert all(torch.equal(a, b) for a, b in zip(in_main, in_workers))


def test_resume_mid_epoch_continues_with_the_same_batches():
    loader = resumable_loader(RandomDraws(), batch_size=4, num_workers=0)
    loader.sampler.set_epoch(1)
    whole_epoch = batches(loader)
    iterator = iter(loader)
    for _ in range(2):
        next(iterator)
    state = loader.state_dict()
    assert state == {"epoch": 1, "batches": 2, "batch_size": 4}
    resumed = resumable_loader(RandomDraws(), batch_size=4, num_workers=2)
    resumed.load_state_dict(state)
    rest = batches(resumed)
    assert len(rest) == 4 and all(torch.equal(a, b) for a, b in zip(rest, whole_epoch[2:]))
    assert resumed.state_dict()["batches"] == 6


def test_state_saved_after_the_last_batch_starts_the_next_epoch():
    loader = resumable_loader(RandomDraws(), batch_size=4, num_workers=0)
    batches(loader)
    resumed = resumable_loader(RandomDraws(), batch_size=4, num_workers=0)
    resumed.load_state_dict(loader.state_dict())
    assert resumed.sampler.epoch == 1
    loader.sampler.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(batches(resumed), batches(loader)))
