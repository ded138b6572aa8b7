"""LightningModules, one per objective."""

from ptft.tasks.autoencoder import AutoencoderPretraining
from ptft.tasks.finetune import FineTuning
from ptft.tasks.gan import GANPretraining

__all__ = ["AutoencoderPretraining", "FineTuning", "GANPretraining"]
