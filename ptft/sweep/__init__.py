"""``ptft sweep``: run a W&B-format sweep YAML locally, with Optuna as the search engine.

    ptft sweep configs/sweeps/gan_imagenette.yaml --count 8 [--storage URL] [--trainer.max_steps=50 ...]

The YAML is the one ``wandb sweep`` takes (``method``, ``metric``, ``parameters``, ``command``).
``grid`` maps to Optuna's GridSampler, ``random`` to RandomSampler, ``bayes`` to TPESampler. The
study (named by the YAML's ``name``, else the file stem) lives in a database, by default
``runs/sweeps/<name>.db`` (SQLite), so a second call continues it; a shared database URL lets
several machines work on one study.

Each trial is a ``ptft fit`` subprocess with the trial's ``--key=value`` arguments (formatted as
W&B's ``${args}``), so a crash ends only that trial. The sweep appends a
:class:`~ptft.callbacks.TrialReport` to the trial's ``trainer.callbacks``; it writes the final
metrics and the checkpoint path to ``runs/sweeps/<name>/trial-<n>/report.json``, where the sweep
reads them, next to the trial's logs; that folder is also the trial's ``trainer.default_root_dir``, so
runs without a logger keep their checkpoints apart. W&B runs are grouped by the sweep name (``WANDB_RUN_GROUP``).

spec.py reads the YAML, search.py maps it to Optuna, runner.py runs a trial, trials.py runs the
study's trials beside other processes (each grid point once), report.py prints the results and
command.py is the command.
"""

from ptft.sweep.command import main

__all__ = ["main"]
