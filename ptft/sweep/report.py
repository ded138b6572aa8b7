"""The results of a study: a table of its trials and the best one's command and checkpoint."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from ptft.sweep.spec import Sweep


def results_table(study: optuna.Study, sweep: Sweep) -> str:
    """All trials of the study: finished ones by the metric (best first), then the others by
    number; the last column is each trial's checkpoint (``-`` when it wrote none)."""
    trials = study.get_trials(deepcopy=False)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value, reverse=sweep.goal == "maximize")
    rows = [["trial", "state", sweep.metric, *sweep.parameters, "checkpoint"]]
    for t in done + sorted((t for t in trials if t.state != TrialState.COMPLETE), key=lambda t: t.number):
        rows.append([str(t.number), t.state.name, "-" if t.value is None else f"{t.value:.4g}",
                     *[_short(t.params.get(k, "-")) for k in sweep.parameters], t.user_attrs.get("checkpoint", "-")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def best_trial(study: optuna.Study, sweep: Sweep) -> str:
    """The best finished trial's metric, ``ptft fit`` command and checkpoint ("" when none finished)."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return ""
    best = study.best_trial
    text = f"best: trial {best.number}, {sweep.metric}={best.value:.6g}: {best.user_attrs.get('command', '')}"
    if best.user_attrs.get("checkpoint"):
        text += f"\n      checkpoint {best.user_attrs['checkpoint']}"
    return text


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
