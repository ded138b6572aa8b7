"""LightningModules, one per objective."""

from ptft.tasks.autoencoder import AutoencoderPretraining
from ptft.tasks.finetune import FineTuning

__all__ = ["AutoencoderPretraining", "FineTuning"]
