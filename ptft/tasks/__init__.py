"""LightningModules, one per objective."""

from ptft.tasks.autoencoder import AutoencoderPretraining
from ptft.tasks.finetune import FineTuning
from ptft.tasks.gan import GANPretraining
from ptft.tasks.mae import MaskedAutoencoderPretraining

__all__ = ["AutoencoderPretraining", "FineTuning", "GANPretraining", "MaskedAutoencoderPretraining"]
