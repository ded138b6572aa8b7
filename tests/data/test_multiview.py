"""Multi-view train batches for joint-embedding SSL (data.views): layout, seeding, exact resume,
colour on the device, the decoded cache, and bad settings named in one line."""

import random
import re

import pytest
import pytorch_lightning as pl
import torch
import torchvision.transforms.v2.functional as TF
from jsonargparse import ArgumentParser

from conftest import make_image_tree
from ptft.data import ImageFolderDataModule, MultiView
from ptft.data.decoded_cache import CachedImages
from ptft.data.views import NUM_PARAMS, blur_kernel_size, color_views_batched
from ptft.errors import ConfigError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_image_tree(tmp_path_factory.mktemp("multiview") / "images", per_class=4)  # 12 train images, 40x48


def datamodule(root, views, num_workers=0, **kwargs):
    dm = ImageFolderDataModule(root=str(root), image_size=16, batch_size=4, num_workers=num_workers, views=views, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def same(a, b) -> bool:
    """Equal nested batches (tuples/lists of tensors)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def test_two_global_and_four_local_views_then_single_view_evaluation(tree):
    dm = datamodule(tree, MultiView(global_crops=2, local_crops=4, local_size=8))
    assert dm.spec.views == (2, 4) and dm.spec.view_sizes == (16, 8)
    raw = next(iter(dm.train_dataloader()))
    assert len(raw) == 2 and len(raw[0]) == 6  # colour done in the workers: (views, labels), uint8
    assert all(view.dtype == torch.uint8 and view.is_contiguous(memory_format=torch.channels_last) for view in raw[0])
    views, labels = dm.on_after_batch_transfer(raw, 0)
    assert [tuple(view.shape) for view in views] == [(4, 3, 16, 16)] * 2 + [(4, 3, 8, 8)] * 4 and labels.shape == (4,)
    for view in views:
        assert view.dtype == torch.float32 and view.is_contiguous(memory_format=torch.channels_last)
        assert view.min() >= -1 and view.max() <= 1
    images, labels = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert isinstance(images, torch.Tensor) and images.shape == (4, 3, 16, 16)
    images, _ = next(iter(dm.feature_dataloader("train")))
    assert isinstance(images, torch.Tensor) and images.shape == (4, 3, 16, 16)
    assert datamodule(tree, None).spec.views is None


@pytest.mark.parametrize("on_device", [False, True])
def test_views_of_one_image_differ(tree, on_device):
    dm = datamodule(tree, MultiView(local_crops=2, local_size=8, color_on_device=on_device))
    random.seed(0)
    (crops, params), _ = dm.datasets["train"][0]  # each view: its own crop and colour parameters
    assert not torch.equal(crops[0], crops[1]) and not torch.equal(crops[2], crops[3])
    assert params.shape == (4, NUM_PARAMS) and all(not torch.equal(params[i], params[j]) for i in range(4) for j in range(i))
    views, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    for i in range(4):
        assert not torch.equal(views[0][i], views[1][i]) and not torch.equal(views[2][i], views[3][i])


def test_same_seed_same_views_other_seed_other_views(tree, monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    views = MultiView(local_crops=2, local_size=8)
    first = list(datamodule(tree, views).train_dataloader())
    assert len(first) == 3
    assert same(first, list(datamodule(tree, views).train_dataloader()))
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    assert not same(first, list(datamodule(tree, views).train_dataloader()))


@pytest.mark.parametrize("on_device", [False, True])
def test_resume_mid_epoch_gives_the_same_next_batches(tree, on_device):
    views = MultiView(local_crops=2, local_size=8, color_on_device=on_device)
    loader = datamodule(tree, views).train_dataloader()
    loader.sampler.set_epoch(1)
    whole_epoch = list(loader)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    resumed = datamodule(tree, views, num_workers=2 if on_device else 0).train_dataloader()  # workers: same draws
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == 2 and same(rest, whole_epoch[1:])


def test_color_on_device_gives_the_same_kind_of_batches_deterministically(tree):
    views = MultiView(local_crops=2, local_size=8, color_on_device=True)
    dm = datamodule(tree, views)
    raw = next(iter(dm.train_dataloader()))
    assert len(raw) == 3 and raw[2].shape == (4, 4, NUM_PARAMS)  # (views, labels, colour parameters)
    out, labels = dm.on_after_batch_transfer(raw, 0)
    assert [tuple(view.shape) for view in out] == [(4, 3, 16, 16)] * 2 + [(4, 3, 8, 8)] * 2
    assert all(view.dtype == torch.float32 and view.min() >= -1 and view.max() <= 1 for view in out)
    assert all(view.is_contiguous(memory_format=torch.channels_last) for view in out)
    again, _ = datamodule(tree, views).on_after_batch_transfer(next(iter(datamodule(tree, views).train_dataloader())), 0)
    assert same(out, again)
    plain, _ = dm.on_after_batch_transfer(raw[:2], 0)  # the same crops without colour: the colour did something
    assert not same(out, plain)


def torchvision_colour(image: torch.Tensor, row: list[float]) -> torch.Tensor:
    """The reference: torchvision's kernels on one float image, one parameter set (see MultiView.draw)."""
    for op in map(int, row[4:8]):
        image = [TF.adjust_brightness_image, TF.adjust_contrast_image, TF.adjust_saturation_image, TF.adjust_hue_image][op](image, row[op])
    if row[8]:
        image = TF.rgb_to_grayscale_image(image, num_output_channels=3)
    if row[9] > 0:
        size = blur_kernel_size(image.shape[-1])
        image = TF.gaussian_blur_image(image, [size, size], [row[9], row[9]])
    return TF.solarize_image(image, 0.5) if row[10] else image


@pytest.mark.parametrize("sync_free", [False, True])
def test_batched_colour_ops_match_torchvisions_per_image_kernels(sync_free):
    """Both batched paths (samples picked in Python on a CPU; whole-batch with identity factors on an
    accelerator) against torchvision's kernels per image, every operation and jitter order included."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(12, 3, 24, 24, generator=generator)
    params = torch.zeros(12, NUM_PARAMS)
    params[:, :3] = 0.6 + 0.8 * torch.rand(12, 3, generator=generator)
    params[:, 3] = 0.2 * torch.rand(12, generator=generator) - 0.1
    params[:, 4:8] = torch.stack([torch.randperm(4, generator=generator) for _ in range(12)]).float()
    params[:, 8] = torch.arange(12) % 3 == 0
    params[:, 9] = torch.where(torch.arange(12) % 2 == 0, 0.1 + 1.9 * torch.rand(12, generator=generator), torch.zeros(12))
    params[:, 10] = torch.arange(12) % 4 == 1
    params[0, :8] = torch.tensor([1.0, 1.0, 1.0, 0.0, 0, 1, 2, 3])  # no jitter
    batched = color_views_batched(images.clone(), params, sync_free=sync_free)
    reference = torch.stack([torchvision_colour(image, row.tolist()) for image, row in zip(images, params)])
    close = (batched - reference).abs() <= 1e-4
    assert close.float().mean() > 0.998, (batched - reference).abs().max()  # (a pixel at the solarize threshold may flip)


def test_local_crops_larger_than_the_global_ones_are_refused_with_the_image_size(tree):
    with pytest.raises(ConfigError, match=re.escape("data.views.local_size 96 is larger than the global crops (64)")):
        ImageFolderDataModule(root=str(tree), image_size=64, views=MultiView(local_crops=2, local_size=96))


@pytest.mark.parametrize("kwargs, message", [
    ({"global_crops": 0}, "data.views.global_crops must be >= 1"),
    ({"local_crops": 2, "global_size": 64, "local_size": 96}, "data.views.local_size 96 is larger than the global crops (64)"),
    ({"global_scale": (0.0, 1.0)}, "data.views.global_scale must be (min, max) area fractions with 0 < min <= max <= 1, got (0.0, 1.0)"),
    ({"local_scale": (0.5, 0.2)}, "data.views.local_scale must be (min, max) area fractions with 0 < min <= max <= 1, got (0.5, 0.2)"),
    ({"global_scale": (0.5, 1.5)}, "data.views.global_scale must be"),
    ({"flip": 1.5}, "data.views.flip must hold probabilities in [0, 1], got 1.5"),
    ({"jitter": -0.1}, "data.views.jitter must hold probabilities in [0, 1], got -0.1"),
    ({"grayscale": 2}, "data.views.grayscale must hold probabilities in [0, 1], got 2"),
    ({"blur": (1.0, 0.1, 1.5)}, "data.views.blur must hold probabilities in [0, 1], got (1.0, 0.1, 1.5)"),
    ({"solarize": (0.0, -0.2, 0.0)}, "data.views.solarize must hold probabilities in [0, 1], got (0.0, -0.2, 0.0)"),
    ({"hue": 0.7}, "data.views.hue must be in [0, 0.5], got 0.7"),
    ({"brightness": -0.4}, "data.views.brightness must be >= 0"),
    ({"blur_sigma": (0.0, 2.0)}, "data.views.blur_sigma must be (min, max) with 0 < min <= max"),
])
def test_bad_settings_are_one_line_naming_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        MultiView(**kwargs)
    assert "\n" not in str(error.value)


def test_views_from_a_config_with_or_without_class_path_and_from_dotted_flags(tree):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ImageFolderDataModule, "data")
    settings = {"local_crops": 4, "local_size": 8, "blur": [1.0, 0.1, 0.5]}
    for views in ({"class_path": "ptft.data.MultiView", "init_args": settings}, settings):
        config = parser.parse_object({"data": {"root": str(tree), "image_size": 16, "views": views}})
        dm = parser.instantiate_classes(config).data
        assert isinstance(dm.views, MultiView) and dm.spec.views == (2, 4) and dm.views.blur == (1.0, 0.1, 0.5)
    config = parser.parse_args([f"--data.root={tree}", "--data.image_size=16", "--data.views.local_crops=3", "--data.views.local_size=8"])
    assert parser.instantiate_classes(config).data.spec.views == (2, 3)


def test_decoded_cache_serves_the_views_at_their_source_side(tree, tmp_path):
    views = MultiView(local_crops=2, local_size=8)
    dm = datamodule(tree, views, decoded_cache=True, cache_dir=str(tmp_path / "cache"))
    assert isinstance(dm.datasets["train"], CachedImages)
    assert sorted(p.name.split("-")[:2] for p in (tmp_path / "cache").iterdir()) == [["train", "20px"], ["val", "16px"]]
    batches = list(dm.train_dataloader())
    out, _ = dm.on_after_batch_transfer(batches[0], 0)
    assert [tuple(view.shape) for view in out] == [(4, 3, 16, 16)] * 2 + [(4, 3, 8, 8)] * 2
    again = datamodule(tree, views, decoded_cache=True, cache_dir=str(tmp_path / "cache"))
    assert same(batches, list(again.train_dataloader()))  # reused cache, same seeded views
    crop_flip = datamodule(tree, None, decoded_cache=True, cache_dir=str(tmp_path / "cache"))  # 1.25x too: the same cache
    assert crop_flip.datasets["train"].folder == dm.datasets["train"].folder


class ViewShapes(pl.LightningModule):
    """Records what training_step and validation_step receive."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[str, list] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        views, labels = batch
        self.seen["train"].append(([tuple(view.shape) for view in views], views[0].dtype, tuple(labels.shape)))
        return self.weight * sum(view.mean() for view in views)

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        self.seen["val"].append((tuple(images.shape), images.dtype))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("on_device", [False, True])
def test_a_trainer_gets_float_views_in_training_and_single_images_in_validation(tree, tmp_path, on_device):
    dm = ImageFolderDataModule(root=str(tree), image_size=16, batch_size=4, num_workers=0,
                               views=MultiView(local_crops=2, local_size=8, color_on_device=on_device))
    model = ViewShapes()
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert model.seen["train"] == [([(4, 3, 16, 16)] * 2 + [(4, 3, 8, 8)] * 2, torch.float32, (4,))] * 2
    assert model.seen["val"] and all(seen == ((4, 3, 16, 16), torch.float32) for seen in model.seen["val"])
