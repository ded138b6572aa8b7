"""Callbacks for pretraining runs."""

from ptft.callbacks.knn import KNNMonitor
from ptft.callbacks.trial_report import TrialReport

__all__ = ["KNNMonitor", "TrialReport"]
