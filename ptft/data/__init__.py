"""LightningDataModules."""

from ptft.data.images import ImageFolderDataModule
from ptft.data.text_classification import TextClassificationDataModule
from ptft.data.wikitext import WikiTextDataModule

__all__ = ["ImageFolderDataModule", "TextClassificationDataModule", "WikiTextDataModule"]
