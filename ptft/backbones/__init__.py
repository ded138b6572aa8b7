"""Backbones: the networks that cross from pretraining to fine-tuning."""

from ptft.backbones.base import Backbone
from ptft.backbones.dcgan import DCGANEncoder
from ptft.backbones.resnet import ResNet

__all__ = ["Backbone", "DCGANEncoder", "ResNet"]
