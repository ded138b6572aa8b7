"""LightningDataModules."""

from ptft.data.images import ImageFolderDataModule
from ptft.data.seq2seq import Seq2SeqDataModule
from ptft.data.speech import SpeechDataModule
from ptft.data.text_classification import TextClassificationDataModule
from ptft.data.views import MultiView
from ptft.data.wikitext import WikiTextDataModule

__all__ = ["ImageFolderDataModule", "MultiView", "Seq2SeqDataModule", "SpeechDataModule", "TextClassificationDataModule",
           "WikiTextDataModule"]
