"""Lightning callbacks: the run machinery every ptft task adds (:func:`run_callbacks`), and
optional monitors to add in ``trainer.callbacks``."""

from ptft.callbacks.atomic_checkpoints import AtomicCheckpoints
from ptft.callbacks.checkpoint_metadata import CheckpointMetadata
from ptft.callbacks.knn import KNNMonitor
from ptft.callbacks.nonfinite import NonFiniteGuard
from ptft.callbacks.preemption import PreemptionCheckpoint
from ptft.callbacks.rng_states import RNGStates

__all__ = ["AtomicCheckpoints", "CheckpointMetadata", "KNNMonitor", "NonFiniteGuard", "PreemptionCheckpoint", "RNGStates"]
