"""Library messages ptft knows to be harmless, silenced at their source for every ``ptft`` command
(and every in-process :func:`ptft.cli.run_cli`). Each is matched exactly; every other warning and
log record still shows.

- Lightning's ``💡 Tip: ... litlogger`` advertisement (a ``rank_zero_info`` record): dropped by a
  filter on Lightning's rank-zero logger that matches that text only.
- ``isinstance(treespec, LeafSpec)`` is deprecated: a FutureWarning torch raises inside
  Lightning's own ``pytorch_lightning/utilities/_pytree.py``; nothing a user can change. Ignored for
  that message, category and module only.
- LightningCLI's ``args parameter is intended to run from within Python ... not recommended to
  provide both args and command line arguments``: :func:`ptft.cli.run_cli` runs a subcommand in
  process (the demo, the benchmarks) with a complete argument list on purpose, whatever the calling
  script's own ``sys.argv``. Ignored for that message from ``pytorch_lightning.cli`` only.
- W&B's ``The anonymous setting has no effect``: Lightning's WandbLogger passes ``anonymous=None``
  to ``wandb.init`` when it is not set, which W&B warns about; :func:`prepare_loggers` leaves it out.
- W&B's ``git root <save_dir> does not exist``: W&B looks for the git repository from the run's
  ``save_dir`` before creating it; :func:`prepare_loggers` creates it first (so W&B also records the
  commit when the folder is inside a repository).
- Lightning's ``Found N module(s) in eval mode at the start of training`` is not silenced here: it is
  right in general, and expected only for a linear probe's frozen backbone, which
  :class:`ptft.tasks.fine_tuning.FineTuningTask` silences for exactly its own modules
  (:func:`expect_eval_mode_warning`).
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

LITLOGGER_TIP = "💡 Tip: For seamless cloud logging"
PYTREE_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
CLI_ARGS_AND_ARGV = r"LightningCLI's args parameter is intended to run from within Python"
# the loggers Lightning's rank_zero_info writes to (lightning_utilities' module-level `log`)
RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


class _DropLitloggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LITLOGGER_TIP)


_TIP_FILTER = _DropLitloggerTip()


def install() -> None:
    """Silence the harmless library messages above; safe to call more than once."""
    warnings.filterwarnings("ignore", message=PYTREE_DEPRECATION, category=FutureWarning,
                            module=r"pytorch_lightning\.utilities\._pytree")
    warnings.filterwarnings("ignore", message=CLI_ARGS_AND_ARGV, module=r"pytorch_lightning\.cli")
    names = set(RANK_ZERO_LOGGERS)
    try:
        import lightning_utilities.core.rank_zero as rank_zero

        names.add(rank_zero.log.name)  # whichever logger rank_zero_info writes to in this version
    except (ImportError, AttributeError):
        pass
    for name in names:
        logger = logging.getLogger(name)
        if _TIP_FILTER not in logger.filters:
            logger.addFilter(_TIP_FILTER)


def prepare_loggers(loggers: list[Any]) -> None:
    """Before a run's W&B experiment starts: create each WandbLogger's ``save_dir`` and leave out
    the ``anonymous=None`` Lightning passes on (both only ever made W&B warn)."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        init = getattr(logger, "_wandb_init", None)
        if not isinstance(init, dict):
            continue
        if "anonymous" in init and init["anonymous"] is None:
            del init["anonymous"]
        if init.get("dir"):
            Path(init["dir"]).mkdir(parents=True, exist_ok=True)


EVAL_MODE_WARNING = "Found {n} module\\(s\\) in eval mode at the start of training"


def expect_eval_mode_warning(count: int) -> tuple:
    """Ignore Lightning's eval-mode warning when it counts exactly ``count`` modules; returns the
    filter, for :func:`forget_warning` once training has started."""
    warnings.filterwarnings("ignore", message=EVAL_MODE_WARNING.format(n=count) + re.escape("."))
    return warnings.filters[0]


def forget_warning(entry: tuple | None) -> None:
    """Remove a filter :func:`expect_eval_mode_warning` added (nothing if it is gone already)."""
    if entry is None:
        return
    try:
        warnings.filters.remove(entry)
    except ValueError:
        return
    # what warnings.filterwarnings does after a change: forget the warnings already seen
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:
        mutated()
