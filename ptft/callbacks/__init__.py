"""Callbacks for pretraining runs."""

from ptft.callbacks.knn import KNNMonitor

__all__ = ["KNNMonitor"]
