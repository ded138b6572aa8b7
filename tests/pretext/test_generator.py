import pytest
import torch

from ptft.pretext.generator import DCGANGenerator


@pytest.mark.parametrize("size", [32, 64, 128])
def test_generator_makes_images_of_the_requested_size_in_tanh_range(size):
    generator = DCGANGenerator(latent_dim=16, image_size=size, base_width=8)
    images = generator(torch.randn(3, 16))
    assert images.shape == (3, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1


def test_dcgan_channel_plan_at_64_px():
    generator = DCGANGenerator(latent_dim=100, image_size=64, base_width=64)
    convs = [m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]


@pytest.mark.parametrize("size", [48, 4, 0, 100])
def test_sizes_the_generator_cannot_make_are_named(size):
    with pytest.raises(ValueError, match=f"cannot produce {size} px images: data.image_size must be a power of two"):
        DCGANGenerator(image_size=size)
