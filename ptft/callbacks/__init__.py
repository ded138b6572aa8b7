"""Lightning callbacks: the run machinery every ptft task adds (``PtftTask.configure_callbacks``),
optional monitors and plain-text progress to add in ``trainer.callbacks``, the experiment record and the run-folder cleanup the ``ptft`` CLI adds, and the
report ``ptft sweep`` adds to each trial."""

from ptft.callbacks.atomic_checkpoints import AtomicCheckpoints
from ptft.callbacks.checkpoint_metadata import CheckpointMetadata
from ptft.callbacks.experiment import ExperimentConfig
from ptft.callbacks.final_checkpoint import FinalCheckpoint
from ptft.callbacks.knn import KNNMonitor
from ptft.callbacks.loader_position import LoaderPosition
from ptft.callbacks.nonfinite import NonFiniteGuard
from ptft.callbacks.online_probe import OnlineLinearProbe
from ptft.callbacks.preemption import PreemptionCheckpoint
from ptft.callbacks.progress import StageProgress
from ptft.callbacks.rng_states import RNGStates
from ptft.callbacks.run_folders import RunFolders
from ptft.callbacks.trial_report import TrialReport

__all__ = ["AtomicCheckpoints", "CheckpointMetadata", "ExperimentConfig", "FinalCheckpoint", "KNNMonitor", "LoaderPosition", "NonFiniteGuard", "OnlineLinearProbe", "PreemptionCheckpoint",
           "RNGStates", "RunFolders", "StageProgress", "TrialReport"]
