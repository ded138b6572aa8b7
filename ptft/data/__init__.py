"""LightningDataModules."""

from ptft.data.images import ImageFolderDataModule

__all__ = ["ImageFolderDataModule"]
