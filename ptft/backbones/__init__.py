"""Backbones: the networks that cross from pretraining to fine-tuning."""

from ptft.backbones.base import Backbone
from ptft.backbones.conformer import Conformer
from ptft.backbones.dcgan import DCGANEncoder
from ptft.backbones.deepspeech2 import DeepSpeech2
from ptft.backbones.resnet import ResNet
from ptft.backbones.seq2seq import Seq2SeqTransformer
from ptft.backbones.text import TextTransformer
from ptft.backbones.vit import ViT

__all__ = ["Backbone", "Conformer", "DCGANEncoder", "DeepSpeech2", "ResNet", "Seq2SeqTransformer", "TextTransformer", "ViT"]
