"""LightningModules, one per objective (``PtftTask`` and ``FineTuningTask`` are their bases)."""

from ptft.tasks.autoencoder import AutoencoderPretraining
from ptft.tasks.base import PtftTask
from ptft.tasks.best_rq import BestRQPretraining
from ptft.tasks.byol import BYOLPretraining
from ptft.tasks.classification import Classification, FineTuning
from ptft.tasks.ctc import CTCFineTuning
from ptft.tasks.denoising_seq2seq import DenoisingSeq2SeqPretraining
from ptft.tasks.dino import DINOPretraining
from ptft.tasks.fine_tuning import FineTuningTask
from ptft.tasks.gan import GANPretraining
from ptft.tasks.language_model import CausalLMPretraining, MaskedLMPretraining
from ptft.tasks.mae import MaskedAutoencoderPretraining
from ptft.tasks.masked_spectrogram import MaskedSpectrogramPretraining
from ptft.tasks.seq2seq import Seq2SeqFineTuning
from ptft.tasks.simclr import SimCLRPretraining

__all__ = ["AutoencoderPretraining", "BYOLPretraining", "BestRQPretraining", "CausalLMPretraining", "CTCFineTuning", "Classification", "DINOPretraining",
           "DenoisingSeq2SeqPretraining", "FineTuning", "FineTuningTask", "GANPretraining", "MaskedAutoencoderPretraining", "MaskedLMPretraining",
           "MaskedSpectrogramPretraining", "PtftTask", "Seq2SeqFineTuning", "SimCLRPretraining"]
