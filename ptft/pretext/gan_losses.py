"""GAN objectives as pure functions of critic outputs (logits), and the gradient regularisers.

Conventions: the critic outputs one unnormalised score per image, higher means "more real".
Every function returns a scalar mean over the batch.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F

GANLoss = Literal["non_saturating", "hinge", "wgan_gp"]
LOSSES = ("non_saturating", "hinge", "wgan_gp")


def discriminator_loss(kind: GANLoss, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """What the discriminator minimises.

    ``non_saturating``: BCE with real=1, fake=0, i.e. softplus(-D(x)) + softplus(D(G(z))).
    ``hinge``: relu(1 - D(x)) + relu(1 + D(G(z))).
    ``wgan_gp``: D(G(z)) - D(x), the negated Wasserstein estimate (add the gradient penalty).
    """
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "non_saturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "wgan_gp":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; expected one of {LOSSES}")


def generator_loss(kind: GANLoss, fake_logits: torch.Tensor) -> torch.Tensor:
    """What the generator minimises: softplus(-D(G(z))) (non-saturating), -D(G(z)) otherwise."""
    fake_logits = fake_logits.float()
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    if kind in ("hinge", "wgan_gp"):
        return -fake_logits.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; expected one of {LOSSES}")


def _input_gradients(critic: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """d critic(images).sum() / d images, in float32 with autocast off, kept differentiable.

    Penalties on input gradients are sensitive to precision: under bf16 autocast the gradient
    norm would be computed from bf16 activations, so the critic runs in float32 here.
    """
    images = images.detach().float().requires_grad_(True)
    with torch.autocast(device_type=images.device.type, enabled=False):
        scores = critic(images).float()
        (gradients,) = torch.autograd.grad(scores.sum(), images, create_graph=True)
    return gradients.flatten(1)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on random interpolates x_hat."""
    alpha = torch.rand((real.shape[0], 1, 1, 1), device=real.device, generator=generator)
    interpolates = torch.lerp(real.detach().float(), fake.detach().float(), alpha)
    norms = _input_gradients(critic, interpolates).norm(dim=1)
    return (norms - 1).pow(2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ||grad D(x)||^2 on real images; weight it by gamma / 2."""
    return _input_gradients(critic, real).pow(2).sum(dim=1).mean()
