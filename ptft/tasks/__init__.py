"""LightningModules, one per objective."""

from ptft.tasks.autoencoder import AutoencoderPretraining
from ptft.tasks.finetune import FineTuning
from ptft.tasks.gan import GANPretraining
from ptft.tasks.language_model import CausalLMPretraining, MaskedLMPretraining
from ptft.tasks.mae import MaskedAutoencoderPretraining

__all__ = ["AutoencoderPretraining", "FineTuning", "CausalLMPretraining", "GANPretraining", "MaskedAutoencoderPretraining", "MaskedLMPretraining"]
