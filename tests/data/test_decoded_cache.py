"""The opt-in decoded-image cache: built once, reused, keyed on the files, written atomically."""

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import make_image_tree
from ptft.data import decoded_cache as dcache
from ptft.data.decoded_cache import CachedImages
from ptft.data.images import ImageFolderDataModule, ImageFiles
from ptft.errors import CorruptImageError


def cached_dm(root, cache_dir, **kwargs):
    dm = ImageFolderDataModule(root=str(root), image_size=16, batch_size=6, num_workers=0, decoded_cache=True,
                               cache_dir=str(cache_dir), **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture
def square_tree(tmp_path):
    return make_image_tree(tmp_path / "images", per_class=4, size=(32, 32))


def test_cache_is_built_by_prepare_data_and_gives_the_same_batches(square_tree, tmp_path):
    dm = cached_dm(square_tree, tmp_path / "cache", train_augment="crop_flip")
    assert isinstance(dm.datasets["train"], CachedImages) and isinstance(dm.datasets["val"], CachedImages)
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(folders) == 2 and folders[0].startswith("train-20px-") and folders[1].startswith("val-16px-")  # crop_flip: 1.25x
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.uint8
    train = dm.datasets["train"]
    assert not all(torch.equal(train[0][0], train[0][0]) for _ in range(5))  # augmentations still per sample, per epoch
    plain = ImageFolderDataModule(root=str(square_tree), image_size=16, num_workers=0)
    plain.setup("fit")
    assert isinstance(plain.datasets["val"], ImageFiles)
    for i in range(len(plain.datasets["val"])):  # the evaluation transform sees the very same pixels
        assert torch.equal(plain.datasets["val"][i][0], dm.datasets["val"][i][0])
        assert plain.datasets["val"][i][1] == dm.datasets["val"][i][1]


def test_cache_is_reused_and_rebuilt_when_a_file_changes(square_tree, tmp_path, monkeypatch):
    cached_dm(square_tree, tmp_path / "cache", train_augment="flip")
    built = []
    original = dcache._Decode.__getitem__
    monkeypatch.setattr(dcache._Decode, "__getitem__", lambda self, i: built.append(i) or original(self, i))
    cached_dm(square_tree, tmp_path / "cache", train_augment="flip")
    assert built == []  # a second run (or another rank) decodes nothing
    changed = square_tree / "train" / "cat" / "0.jpg"
    os.utime(changed, ns=(1, 1))  # same bytes, new mtime: a new cache for train, val untouched
    dm = cached_dm(square_tree, tmp_path / "cache", train_augment="flip")
    assert len(built) == 12 and len(list((tmp_path / "cache").iterdir())) == 3
    assert dm.datasets["train"][0][0].shape == (3, 16, 16)


def test_a_failed_build_leaves_no_cache_and_the_next_run_builds_it(square_tree, tmp_path):
    cache = tmp_path / "cache"
    bad = square_tree / "val" / "dog" / "3.jpg"
    data = bad.read_bytes()
    dm = ImageFolderDataModule(root=str(square_tree), image_size=16, num_workers=0, decoded_cache=True, cache_dir=str(cache))
    bad.write_bytes(data[: len(data) // 2])  # damaged after the start-up scan: the build fails half-way
    with pytest.raises(CorruptImageError, match="3.jpg: cannot decode image"):
        dm.prepare_data()
    assert [p.name for p in cache.iterdir() if p.name.startswith("val")] == []  # no half cache, no temp folder
    bad.write_bytes(data)
    dm = cached_dm(square_tree, cache)
    assert isinstance(dm.datasets["val"], CachedImages) and len(dm.datasets["val"]) == 12


def test_read_only_data_falls_back_to_the_user_cache_dir(square_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(dcache.os, "access", lambda path, mode: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    dm = ImageFolderDataModule(root=str(square_tree), image_size=16, num_workers=0, decoded_cache=True)
    assert dm.cache_root == tmp_path / "xdg" / "ptft"
    monkeypatch.undo()
    assert ImageFolderDataModule(root=str(square_tree), num_workers=0).cache_root == square_tree / ".ptft_cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    square_tree.chmod(0o555)  # no write bits: read-only data, also for root (who may still write into it)
    try:
        assert ImageFolderDataModule(root=str(square_tree), num_workers=0, decoded_cache=True).cache_root == tmp_path / "xdg" / "ptft"
    finally:
        square_tree.chmod(0o755)


def test_workers_read_the_memmap_without_copying_it_into_each_process(square_tree, tmp_path):
    dm = cached_dm(square_tree, tmp_path / "cache", train_augment="none")
    dataset = dm.datasets["train"]
    dataset[0]
    pixels = dataset._pixels  # a read-only view of the mapping, not a copy
    assert isinstance(pixels.base, np.memmap) and not pixels.flags.owndata and not pixels.flags.writeable
    assert dataset.__getstate__()["_pixels"] is None
    batches = list(DataLoader(dataset, batch_size=12, num_workers=2))
    assert sum(len(images) for images, _ in batches) == 12
