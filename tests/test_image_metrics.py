import pytest
import torch

from ptft.backbones import DCGANEncoder
from ptft.errors import ConfigError
from ptft.handoff import export_backbone
from ptft.image_metrics import GenerativeMetrics, InceptionFeatures
from ptft.tasks import AutoencoderPretraining


@pytest.fixture
def offline_extractor(tmp_path):
    """A ptft export folder: a randomly initialised DCGAN encoder serves as the FID feature network."""
    torch.manual_seed(0)
    model = AutoencoderPretraining(DCGANEncoder(base_width=8, num_layers=3))  # 32 pooled features
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "ptft": {"backbone": model.backbone.spec()}}, path)
    return str(export_backbone(path, tmp_path / "extractor"))


def structured_images(n, seed):
    """Smooth colour blobs in [-1, 1]: a stand-in for a set of real images."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(low, size=16, mode="bilinear", align_corners=False)


def test_fid_and_kid_are_zero_for_identical_sets_and_large_against_noise(offline_extractor):
    real = structured_images(300, seed=0)
    metrics = GenerativeMetrics(offline_extractor, kid_subset_size=50)
    metrics.update(real, real=True)
    metrics.update(real, real=False)
    same = metrics.compute()
    metrics.reset_fake()  # real features stay
    metrics.update(torch.rand(300, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1, real=False)
    noise = metrics.compute()
    metrics.reset_fake()
    metrics.update(structured_images(300, seed=1), real=False)
    other_draw = metrics.compute()
    assert abs(same["val/fid"].item()) < 1e-3 and abs(same["val/kid"].item()) < 1e-3
    assert noise["val/fid"].item() > 10 * other_draw["val/fid"].item() > 0  # noise is far, a fresh draw of the same kind near
    assert noise["val/kid"].item() > 10 * max(other_draw["val/kid"].item(), 1e-6)


def test_too_few_images_for_kid_is_named(offline_extractor):
    metrics = GenerativeMetrics(offline_extractor, kid_subset_size=100)
    metrics.update(structured_images(20, 0), real=True)
    metrics.update(structured_images(20, 1), real=False)
    with pytest.raises(ConfigError, match="model.kid_subset_size=100"):
        metrics.compute()


def test_inception_without_its_weights_fails_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty weights cache
    with pytest.raises(ConfigError, match="InceptionV3 FID weights are not available.*model.inception_weights=PATH"):
        InceptionFeatures(weights_path=str(tmp_path / "missing.pth"))


def test_a_missing_extractor_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        GenerativeMetrics(str(tmp_path / "nowhere"))
