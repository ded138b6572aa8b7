import math

import pytest
import torch

from ptft.pretext.gan_losses import discriminator_loss, generator_loss, gradient_penalty, r1_penalty


def softplus(x):
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("kind, d_expected, g_expected", [
    # real scores [2, 0.5], fake scores [-1, 1]
    ("non_saturating", (softplus(-2) + softplus(-0.5)) / 2 + (softplus(-1) + softplus(1)) / 2, (softplus(1) + softplus(-1)) / 2),
    ("hinge", (0 + 0.5) / 2 + (0 + 2) / 2, -0.0),
    ("wgan_gp", 0.0 - 1.25, -0.0),
])
def test_losses_on_hand_computed_scores(kind, d_expected, g_expected):
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-1.0, 1.0])
    assert discriminator_loss(kind, real, fake).item() == pytest.approx(d_expected, abs=1e-6)
    assert generator_loss(kind, fake).item() == pytest.approx(g_expected, abs=1e-6)


def test_non_saturating_at_chance_is_log_two():
    zeros = torch.zeros(5)
    assert discriminator_loss("non_saturating", zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert generator_loss("non_saturating", zeros).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("kind", ["non_saturating", "hinge", "wgan_gp"])
def test_signs_discriminator_pushes_real_up_and_fake_down_generator_pushes_fake_up(kind):
    real = torch.tensor([0.3, -0.2], requires_grad=True)
    fake = torch.tensor([0.1, -0.4], requires_grad=True)
    discriminator_loss(kind, real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()  # descending the loss raises D(x), lowers D(G(z))
    fake.grad = None
    generator_loss(kind, fake).backward()
    assert (fake.grad < 0).all()  # descending the generator loss raises D(G(z))


def linear_critic(weights):
    return lambda images: images.flatten(1) @ weights


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic_and_grows_quadratically():
    torch.manual_seed(0)
    real, fake = torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4)
    direction = torch.randn(48)
    unit = direction / direction.norm()
    assert gradient_penalty(linear_critic(unit), real, fake).item() == pytest.approx(0, abs=1e-10)
    assert gradient_penalty(linear_critic(3 * unit), real, fake).item() == pytest.approx(4.0, rel=1e-5)  # (3 - 1)^2


def test_gradient_penalty_is_differentiable_and_float32_under_bf16_autocast():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(144, 1))
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    score = lambda x: critic(x).squeeze(1)  # noqa: E731
    reference = gradient_penalty(score, real, fake, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = gradient_penalty(score, real.bfloat16(), fake.bfloat16(), generator=torch.Generator().manual_seed(1))
    assert penalty.dtype == torch.float32
    assert penalty.item() == pytest.approx(reference.item(), rel=1e-2)  # only the bf16 inputs differ
    penalty.backward()
    weights = [p for p in critic.parameters() if p.dim() > 1]  # biases after the last nonlinearity leave input gradients alone
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in weights)


def test_r1_penalty_is_the_squared_input_gradient_norm():
    weights = torch.tensor([1.0, -2.0, 2.0])
    critic = lambda x: (x.flatten(1) * weights).sum(1)  # noqa: E731
    assert r1_penalty(critic, torch.randn(6, 3)).item() == pytest.approx(9.0)
