"""LightningModules, one per objective (``PtftTask`` and ``FineTuningTask`` are their bases)."""

from ptft.tasks.autoencoder import AutoencoderPretraining
from ptft.tasks.base import PtftTask
from ptft.tasks.classification import Classification, FineTuning
from ptft.tasks.fine_tuning import FineTuningTask
from ptft.tasks.gan import GANPretraining
from ptft.tasks.language_model import CausalLMPretraining, MaskedLMPretraining
from ptft.tasks.mae import MaskedAutoencoderPretraining

__all__ = ["AutoencoderPretraining", "CausalLMPretraining", "Classification", "FineTuning", "FineTuningTask", "GANPretraining",
           "MaskedAutoencoderPretraining", "MaskedLMPretraining", "PtftTask"]
