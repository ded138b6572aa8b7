from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image_tree
from ptft.data.images import CorruptImageError, ImageFolderDataModule, decode_image, stratified_subset


def test_num_classes_known_right_after_init(image_tree):
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, num_workers=0)
    assert dm.spec.num_classes == 3 and dm.spec.label_names == dm.classes == ["cat", "dog", "owl"]


def test_relative_root_is_found_through_ptft_data(image_tree, monkeypatch, tmp_path):
    monkeypatch.setenv("PTFT_DATA", str(image_tree.parent))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert ImageFolderDataModule(root="images", num_workers=0).root == image_tree


def test_batches_are_uint8_until_the_device_then_float_in_unit_range(image_tree):
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=4, num_workers=0)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 16, 16) and labels.dtype == torch.int64
    images, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert images.dtype == torch.float32 and images.min() >= -1 and images.max() <= 1
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_val_is_deterministic_and_train_is_augmented(image_tree):
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=24, num_workers=0, train_augment="crop_flip")
    dm.setup("fit")
    val = [next(iter(dm.val_dataloader()))[0] for _ in range(2)]
    assert torch.equal(val[0], val[1])
    train = dm.datasets["train"]
    assert not all(torch.equal(train[0][0], train[0][0]) for _ in range(5))


def test_reduced_size_decoding_keeps_aspect_and_shorter_side(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((224, 300, 3), dtype=np.uint8)).save(path)
    image = decode_image(str(path), 32)
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 43)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(tiny)  # grayscale 1x1: upscaled, RGB
    assert decode_image(str(tiny), 8).shape == (3, 8, 8)


def test_label_fraction_is_stratified_seeded_and_rank_independent():
    targets = [0] * 50 + [1] * 30 + [2] * 20
    subset = stratified_subset(targets, 0.1, seed=3)
    assert Counter(targets[i] for i in subset) == {0: 5, 1: 3, 2: 2}
    assert subset == stratified_subset(targets, 0.1, seed=3)  # what another rank computes
    assert subset != stratified_subset(targets, 0.1, seed=4)
    assert Counter(targets[i] for i in stratified_subset(targets, 0.01, seed=0)) == {0: 1, 1: 1, 2: 1}


def test_label_fraction_applies_to_train_only(tmp_path):
    root = make_image_tree(tmp_path / "t", per_class=10)
    dm = ImageFolderDataModule(root=str(root), label_fraction=0.3, num_workers=0)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 9 and len(dm.datasets["val"]) == 30


def test_cifar_style_test_split(tmp_path):
    root = make_image_tree(tmp_path / "c", splits=("train", "test"))
    dm = ImageFolderDataModule(root=str(root), val_split="test", image_size=8, num_workers=0)
    dm.setup("fit")
    assert len(dm.datasets["val"]) == 24


@pytest.mark.parametrize("rename, message", [
    (None, "data.root: .*nowhere is not a folder"),
    (("val", "valid"), "data.val_split: .*val is not a folder; folders in .*: \\['train', 'valid'\\]"),
    (("val/owl", "val/eagle"), "only in train: \\['owl'\\], only in val: \\['eagle'\\]"),
])
def test_bad_trees_fail_at_init_naming_the_path(image_tree, rename, message):
    root = image_tree / "nowhere"
    if rename:
        (image_tree / rename[0]).rename(image_tree / rename[1])
        root = image_tree
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        ImageFolderDataModule(root=str(root), num_workers=0)


def test_split_without_images_is_an_error_naming_it(tmp_path):
    root = tmp_path / "empty"
    for split in ("train", "val"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match=r"data.train_split: no images in .*empty/train"):
        ImageFolderDataModule(root=str(root), num_workers=0)


def _corrupt(root: Path) -> Path:
    bad = root / "train" / "dog" / "bad.png"
    bad.write_text("this is text, not a PNG")
    (root / "train" / "dog" / "empty.jpg").write_bytes(b"")
    return bad


def test_corrupt_image_error_names_the_file(image_tree):
    bad = _corrupt(image_tree)
    with pytest.raises(CorruptImageError, match="bad.png|empty.jpg") as info:
        ImageFolderDataModule(root=str(image_tree), num_workers=0)
    assert "skip_corrupt" in str(info.value) and str(bad.parent) in str(info.value)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # header intact, pixel data cut


def test_skip_corrupt_skips_and_counts_truncated_images_too(image_tree):
    _corrupt(image_tree)
    _truncate(image_tree / "train" / "cat" / "0.jpg")
    dm = ImageFolderDataModule(root=str(image_tree), num_workers=0, skip_corrupt=True)
    assert len(dm.skipped_files) == 3 and len(dm.samples["train"]) == 23
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 23


def test_truncated_jpeg_without_skip_corrupt_fails_at_decode_naming_the_file(image_tree):
    path = image_tree / "train" / "cat" / "0.jpg"
    _truncate(path)
    dm = ImageFolderDataModule(root=str(image_tree), num_workers=0)
    dm.setup("fit")
    index = next(i for i, (p, _) in enumerate(dm.datasets["train"].samples) if p == str(path))
    with pytest.raises(CorruptImageError, match="0.jpg.*skip_corrupt=true"):
        dm.datasets["train"][index]


@pytest.mark.parametrize("kwargs, message", [
    ({"label_fraction": 0.0}, "label_fraction must be in"),
    ({"train_augment": "heavy"}, "data.train_augment must be one of"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
])
def test_bad_arguments_are_named(image_tree, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageFolderDataModule(root=str(image_tree), **kwargs)


def test_real_imagenette_batches(imagenette):
    dm = ImageFolderDataModule(root=str(imagenette), image_size=32, batch_size=64, num_workers=0, label_fraction=0.03)
    assert dm.spec.num_classes == 10
    dm.setup("fit")
    assert 250 < len(dm.datasets["train"]) < 320 and len(dm.datasets["val"]) == 3925
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.uint8 and labels.max() < 10


def test_imagenette_found_locally_or_a_clear_error_when_download_fails(tmp_path, monkeypatch):
    import urllib.error

    from ptft.data import imagenette

    make_image_tree(tmp_path / "imagenette2-160", classes=("a",), per_class=1)
    assert imagenette.find_or_download_imagenette(tmp_path) == tmp_path / "imagenette2-160"

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(imagenette, "Imagenette", offline)
    with pytest.raises(imagenette.MissingPathError, match=r"Imagenette is not in .*empty.*downloading it failed.*set PTFT_DATA"):
        imagenette.find_or_download_imagenette(tmp_path / "empty")


def test_crops_are_channels_last_views_with_interpolates_values():
    import torch.nn.functional as F

    from ptft.data.decoding import CropResize

    pixels = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    image = CropResize("none", 32)(pixels)
    square = torch.from_numpy(pixels[:, 10:80].copy()).permute(2, 0, 1)[None]  # the central 70x70
    expected = F.interpolate(square, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert image.permute(1, 2, 0).is_contiguous() and torch.equal(image, expected)


@pytest.mark.parametrize("workers", [0, 1])
def test_collated_batches_are_channels_last_in_workers_too(workers):
    from torch.utils.data import DataLoader

    from ptft.data.decoding import CropResize, collate_images

    rng = np.random.default_rng(1)
    crop = CropResize("none", 16)
    images = [crop(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)) for _ in range(6)]
    samples = [(image, i % 3) for i, image in enumerate(images)]
    batches = list(DataLoader(samples, batch_size=3, num_workers=workers, collate_fn=collate_images))
    batch, labels = batches[1]
    assert batch.shape == (3, 3, 16, 16) and batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch, torch.stack(images[3:])) and labels.tolist() == [0, 1, 2]


def test_jpegs_decode_like_pil_and_reduce_in_the_decoder(tmp_path):
    from ptft.data.decoding import load_rgb

    path = tmp_path / "photo.jpg"
    pixels = np.random.default_rng(2).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=85)
    with Image.open(path) as image:
        assert np.array_equal(load_rgb(str(path), 100), np.asarray(image.convert("RGB")))  # no reduction fits: full size
    reduced = load_rgb(str(path), 30)
    assert 30 <= min(reduced.shape[:2]) < 60 and reduced.shape[2] == 3  # 120 px -> at most 1/2 in the decoder
    gray = tmp_path / "gray.jpg"
    Image.fromarray(pixels[..., 0]).save(gray)
    assert load_rgb(str(gray), 100).shape == (120, 200, 3)
