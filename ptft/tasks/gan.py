"""GAN pretraining: a generator against a discriminator whose trunk is the shared backbone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from pytorch_lightning.cli import OptimizerCallable
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as add_spectral_norm
from torchvision.utils import make_grid, save_image

from ptft.backbones.base import Backbone, SpatialBackbone
from ptft.backbones.norm import NormKind
from ptft.data.spec import DataSpec
from ptft.ema import EMACopy, warmup_momentum
from ptft.errors import ConfigError, DivergenceError, OutputExistsError
from ptft.handoff import check_weights, load_checkpoint
from ptft.image_logging import log_image
from ptft.image_metrics import GenerativeMetrics
from ptft.pretext.critic_head import CriticHead
from ptft.pretext.gan_losses import LOSSES, GANLoss, discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from ptft.pretext.generator import DCGANGenerator
from ptft.tasks.base import PtftTask

GENERATOR_PREFIX = "generator_ema.module."


class GANPretraining(PtftTask):
    """Adversarial pretraining with manual optimisation: ``n_critic`` discriminator steps, then a
    generator step. The discriminator is ``self.backbone`` + a :class:`CriticHead`, so its trunk is
    exported and fine-tuned like any other backbone; the generator and its EMA copy stay behind.

    Under DDP the discriminator is synchronised by DDP and the generator's gradients are averaged
    by this task (the generator is kept out of DDP's reducer, which would otherwise wait for
    generator gradients during discriminator steps), so plain ``strategy: ddp`` works.
    ``trainer.max_steps`` counts optimizer steps of both networks: with ``n_critic: 1`` it is twice
    the number of batches.

    Args:
        backbone: the discriminator trunk (``DCGANEncoder`` or ``ResNet``; it must downsample).
        image_size: side of real and generated images; None: the data's (``data_spec.image_size``).
        latent_dim: size of the generator's latent vector.
        generator_width: channels of the generator's last hidden layer (see :class:`DCGANGenerator`).
        generator_norm: normalisation in the generator.
        loss: ``non_saturating`` (DCGAN's BCE), ``hinge`` or ``wgan_gp`` (Wasserstein + gradient penalty).
        gp_weight: weight of the WGAN-GP gradient penalty (used with ``loss: wgan_gp``).
        r1_gamma: weight gamma of the R1 penalty gamma/2 * ||grad D(x)||^2 on real images (0: off).
        spectral_norm: spectral-normalise every convolution and linear layer of the discriminator.
        n_critic: discriminator steps per generator step.
        ema_decay: decay of the generator's exponential moving average, which makes the samples
            and metrics; 0 makes the EMA a copy of the generator.
        generator_optimizer: optimizer of the generator, e.g. Adam(lr=2e-4, betas=[0.5, 0.999]).
        discriminator_optimizer: optimizer of the discriminator (a separate rate: TTUR).
        num_grid_images: samples from fixed latents logged as ``val/samples`` each validation epoch.
        fid_extractor: features for FID/KID on the validation split each validation epoch: a ptft
            ``.ckpt`` or ``ptft export`` folder (works offline), ``inception`` (InceptionV3 via
            torchmetrics and torch-fidelity; needs its weights), or null (no metrics).
        inception_weights: a local copy of torch-fidelity's InceptionV3 weights for ``inception``.
        kid_subset_size: images per KID subset (at most the number of validation images).
        torch_compile: see :class:`PtftTask`; with a gradient penalty (``wgan_gp``, ``r1_gamma``)
            only the generator is compiled (compiled code has no double backward).
        data_spec: see :class:`PtftTask`. The GAN takes no other shared option: it has its two
            optimizers and its own non-finite guard (manual optimisation).
    """

    not_hyperparameters = [*PtftTask.not_hyperparameters, "generator_optimizer", "discriminator_optimizer"]
    optimizer_options = {"optimizer": "discriminator_optimizer", "generator_optimizer": "generator_optimizer"}

    def __init__(
        self,
        backbone: Backbone,
        image_size: int | None = None,
        latent_dim: int = 128,
        generator_width: int = 64,
        generator_norm: NormKind = "batch",
        loss: GANLoss = "hinge",
        gp_weight: float = 10.0,
        r1_gamma: float = 0.0,
        spectral_norm: bool = False,
        n_critic: int = 1,
        ema_decay: float = 0.999,
        generator_optimizer: OptimizerCallable = torch.optim.Adam,
        discriminator_optimizer: OptimizerCallable = torch.optim.Adam,
        num_grid_images: int = 64,
        fid_extractor: str | None = None,
        inception_weights: str | None = None,
        kid_subset_size: int = 100,
        torch_compile: bool = False,
        data_spec: DataSpec | None = None,
    ) -> None:
        super().__init__(backbone, optimizer=discriminator_optimizer, torch_compile=torch_compile, data_spec=data_spec)
        image_size = image_size or (data_spec.image_size if data_spec is not None else None)
        if image_size is None:
            raise ConfigError("model.image_size is not set: give it, or train with an image DataModule whose image_size the CLI links in")
        if loss not in LOSSES:
            raise ConfigError(f"model.loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if not isinstance(n_critic, int) or n_critic < 1:
            raise ConfigError(f"model.n_critic must be an integer >= 1 (discriminator steps per generator step), got {n_critic!r}")
        if not 0 <= ema_decay < 1:
            raise ConfigError(f"model.ema_decay must be in [0, 1), got {ema_decay}")
        if gp_weight < 0 or r1_gamma < 0:
            raise ConfigError(f"model.gp_weight and model.r1_gamma must be >= 0, got {gp_weight}, {r1_gamma}")
        stride = getattr(backbone, "feature_stride", 1)
        if not isinstance(backbone, SpatialBackbone) or stride <= 1:
            raise ConfigError(
                f"model.backbone {type(backbone).__name__} has no spatially downsampled feature map (feature_stride={stride}): "
                "the critic head needs a trunk that reduces the image to a small grid, such as DCGANEncoder or ResNet"
            )
        if image_size % stride or image_size < stride:
            raise ConfigError(
                f"data.image_size={image_size} is not a multiple of the backbone's stride {stride}: "
                "the critic head needs a whole feature grid"
            )
        if loss == "wgan_gp" and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules()):
            rank_zero_warn("loss wgan_gp with BatchNorm in the critic: the penalty is per image, BatchNorm mixes images; use norm: group or none")
        self.automatic_optimization = False
        self.generator_spec = {"latent_dim": latent_dim, "image_size": image_size, "base_width": generator_width, "norm": generator_norm}
        self.generator = DCGANGenerator(**self.generator_spec)
        self.critic_head = CriticHead(backbone.feature_channels, image_size // stride)
        if spectral_norm:
            for module in [*backbone.modules(), *self.critic_head.modules()]:
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    add_spectral_norm(module)
        self.generator_ema = EMACopy(self.generator, warmup_momentum(ema_decay), average_buffers=True)  # keys generator_ema.module.*
        self.register_buffer("fixed_latents", torch.randn(num_grid_images, latent_dim, generator=torch.Generator().manual_seed(0)))
        self.metrics = GenerativeMetrics(fid_extractor, inception_weights, kid_subset_size) if fid_extractor else None
        self.image_size = image_size
        self.loss = loss
        self.gp_weight = gp_weight
        self.r1_gamma = r1_gamma
        self.n_critic = n_critic
        self.generator_optimizer = generator_optimizer
        self.critic_steps = 0  # saved in checkpoints, so n_critic keeps its rhythm across a resume
        self._real_features_done = False
        self._seed = 0

    def critic(self, images: torch.Tensor) -> torch.Tensor:
        """One realness score per image."""
        return self.critic_head(self.backbone.forward_features(images))

    def compile_regions(self) -> list[nn.Module]:
        regions: list[nn.Module] = [self.generator]
        if not self.penalised:  # a penalty differentiates the critic's gradient: compiled code has no double backward
            regions += [*super().compile_regions(), self.critic_head]
        return regions

    @property
    def penalised(self) -> bool:
        return (self.loss == "wgan_gp" and self.gp_weight > 0) or self.r1_gamma > 0

    def latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.generator.latent_dim, device=self.fixed_latents.device, generator=generator)

    def step_random(self, purpose: int) -> torch.Generator:
        """Randomness of one training step: its own stream per rank (seed_everything gives every rank
        the same global stream, which would feed every rank the same latents) and a function of the
        seed and the step, so a resumed run draws what the uninterrupted one would have."""
        seed = ((self._seed * 1_000_003 + self.global_rank) * 1_000_003 + self.critic_steps) * 4 + purpose
        return torch.Generator(self.fixed_latents.device).manual_seed(seed % 2**63)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Images from latents, made by the EMA generator."""
        return self.generator_ema(latents)

    def check_data(self, spec: DataSpec) -> None:
        super().check_data(spec)
        image_size = spec.image_size
        if image_size is not None and image_size != self.image_size:
            raise ConfigError(f"data.image_size={image_size} but model.image_size={self.image_size}: the generator must make images of the data's size")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.trainer.world_size > 1:
            if not isinstance(self.trainer.strategy, DDPStrategy):
                raise ConfigError(f"GAN pretraining on several devices supports the ddp strategies, not {type(self.trainer.strategy).__name__}")
            # DDP synchronises the discriminator; the generator's gradients are averaged in generator_step.
            self._ddp_params_and_buffers_to_ignore = [f"generator.{name}" for name, _ in self.generator.named_parameters()]

    def on_fit_start(self) -> None:
        self._seed = torch.initial_seed()  # set by seed_everything; the base of every step's randomness
        if dist.is_available() and dist.is_initialized():  # DDP does not broadcast parameters it ignores
            for parameter in self.generator.parameters():
                dist.broadcast(parameter.data, src=0)

    def configure_optimizers(self):
        discriminator = self.weight_decay_groups([{"params": [*self.backbone.parameters(), *self.critic_head.parameters()]}])
        return [self.optimizer(discriminator), self.generator_optimizer(self.weight_decay_groups([{"params": self.generator.parameters()}]))]

    def stop_if_not_finite(self, name: str, loss: torch.Tensor) -> None:
        values = self.all_gather(loss.detach()).flatten()  # every rank sees every rank's loss and stops together
        if not torch.isfinite(values).all():
            shown = ", ".join(f"{v:g}" for v in values.tolist())
            raise DivergenceError(
                f"{name} is not finite ({shown}) at step {self.trainer.global_step}, epoch {self.current_epoch}: "
                "stopped before the update, so weights and checkpoints are those of the last finite step; "
                "try lower learning rates, spectral_norm: true or a gradient penalty"
            )

    def training_step(self, batch, batch_idx: int) -> None:
        real, _ = batch
        discriminator_optimizer, generator_optimizer = self.optimizers()
        with torch.no_grad():
            fake = self.generator(self.latents(len(real), self.step_random(0)))
        real_logits, fake_logits = self.critic(real), self.critic(fake)
        d_loss = discriminator_loss(self.loss, real_logits, fake_logits)
        total = d_loss
        if self.loss == "wgan_gp" and self.gp_weight > 0:
            penalty = gradient_penalty(self.critic, real, fake, self.step_random(1))
            total = total + self.gp_weight * penalty
            self.log("train/gradient_penalty", penalty)
        if self.r1_gamma > 0:
            penalty = r1_penalty(self.critic, real)
            total = total + self.r1_gamma / 2 * penalty
            self.log("train/r1_penalty", penalty)
        self.stop_if_not_finite("train/d_loss", total)
        discriminator_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        discriminator_optimizer.step()
        self.critic_steps += 1
        self.log("train/d_loss", d_loss, prog_bar=True)
        self.log_dict({"train/d_real": real_logits.float().mean(), "train/d_fake": fake_logits.float().mean()})
        if self.critic_steps % self.n_critic == 0:
            self.generator_step(generator_optimizer, len(real))

    def generator_step(self, optimizer, batch_size: int) -> None:
        g_loss = generator_loss(self.loss, self.critic(self.generator(self.latents(batch_size, self.step_random(2)))))
        self.stop_if_not_finite("train/g_loss", g_loss)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)  # also fills discriminator gradients, which its next step clears
        self.average_generator_gradients()
        optimizer.step()
        self.generator_ema.update_parameters(self.generator)
        self.log("train/g_loss", g_loss, prog_bar=True)

    def average_generator_gradients(self) -> None:
        world_size = self.trainer.world_size
        if world_size == 1:
            return
        gradients = [p.grad for p in self.generator.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in gradients])
        dist.all_reduce(flat)
        flat /= world_size
        for gradient, averaged in zip(gradients, flat.split([g.numel() for g in gradients])):
            gradient.copy_(averaged.view(gradient.shape))

    def validation_step(self, batch, batch_idx: int) -> None:
        real, _ = batch
        seed = batch_idx * self.trainer.world_size + self.global_rank  # the same fakes every epoch
        fake = self.generator_ema(self.latents(len(real), torch.Generator(real.device).manual_seed(seed)))
        real_logits, fake_logits = self.critic(real), self.critic(fake)
        self.log_dict({
            "val/d_loss": discriminator_loss(self.loss, real_logits, fake_logits),
            "val/d_real": real_logits.float().mean(),
            "val/d_fake": fake_logits.float().mean(),
        }, sync_dist=True)
        if self.metrics is not None and not self.trainer.sanity_checking:
            if not self._real_features_done:
                self.metrics.update(real, real=True)
            self.metrics.update(fake.to(real.dtype), real=False)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        if self.metrics is not None:
            self.log_dict(self.metrics.compute(), sync_dist=False)  # torchmetrics already reduced across ranks
            self.metrics.reset_fake()
            self._real_features_done = True
        if len(self.fixed_latents):
            samples = self.generator_ema(self.fixed_latents).float().add(1).div(2)
            log_image(self.trainer, "val/samples", make_grid(samples, nrow=math.ceil(math.sqrt(len(samples))), padding=1))

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Discriminator scores of the batch's images."""
        images, _ = batch
        return self.critic(images)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.setdefault("ptft", {})
        info["generator"] = dict(self.generator_spec)
        info["critic_steps"] = self.critic_steps
        for key in [k for k in checkpoint["state_dict"] if k.startswith("metrics.")]:
            del checkpoint["state_dict"][key]  # the feature extractor is a fixed input, not trained state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.critic_steps = checkpoint.get("ptft", {}).get("critic_steps", 0)
        if self.metrics is not None:
            checkpoint["state_dict"].update({f"metrics.{k}": v for k, v in self.metrics.state_dict().items()})


def load_generator(checkpoint_path: str, ema: bool = True) -> DCGANGenerator:
    """The (EMA by default) generator of a GANPretraining checkpoint, in eval mode."""
    checkpoint = load_checkpoint(checkpoint_path)
    info = checkpoint.get("ptft", {}) if isinstance(checkpoint, dict) else {}
    if "generator" not in info:
        task = info.get("task", "no ptft task")
        raise ConfigError(f"{checkpoint_path} is not a GAN checkpoint ({task}): `ptft sample` needs one written by ptft.tasks.GANPretraining")
    prefix = GENERATOR_PREFIX if ema else "generator."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    with torch.device("meta"):  # shapes first: a spec that does not fit the weights allocates nothing
        shell = DCGANGenerator(**info["generator"])
    check_weights(shell, state, checkpoint_path, "generator", "the DCGANGenerator checkpoint['ptft']['generator'] describes (nothing was built)")
    generator = DCGANGenerator(**info["generator"])
    generator.load_state_dict(state, strict=True)
    return generator.eval()


@torch.no_grad()
def write_samples(generator: DCGANGenerator, num: int, out_dir: str, seed: int = 0, batch_size: int = 256, overwrite: bool = False) -> Path:
    """``num`` PNGs ``sample_00000.png``... and ``grid.png`` (up to 64 of them) in ``out_dir``."""
    if num < 1:
        raise ConfigError(f"--num must be >= 1, got {num}")
    out = Path(out_dir)
    if out.is_dir() and any(out.glob("sample_*.png")) and not overwrite:
        raise OutputExistsError(f"{out} already holds samples; pass --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    random = torch.Generator().manual_seed(seed)
    grid: list[torch.Tensor] = []
    for start in range(0, num, batch_size):
        latents = torch.randn(min(batch_size, num - start), generator.latent_dim, generator=random)
        images = generator(latents).float().add(1).div(2).clamp(0, 1)
        for i, image in enumerate(images, start):
            save_image(image, out / f"sample_{i:05d}.png")
        grid.extend(images[: max(0, 64 - len(grid))])
    save_image(torch.stack(grid), out / "grid.png", nrow=math.ceil(math.sqrt(len(grid))), padding=1)
    return out
