"""LightningDataModules."""

from ptft.data.images import ImageFolderDataModule
from ptft.data.speech import SpeechDataModule
from ptft.data.text_classification import TextClassificationDataModule
from ptft.data.wikitext import WikiTextDataModule

__all__ = ["ImageFolderDataModule", "SpeechDataModule", "TextClassificationDataModule", "WikiTextDataModule"]
