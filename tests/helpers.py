"""Helpers for tests that run the ``ptft`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, TESTS

PTFT = str(Path(sys.executable).parent / "ptft")
CONFIGS = REPO / "configs"


def run_ptft(*args: str, cwd: Path, wandb_mode: str = "offline", timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed ``ptft`` console script; tests/ is importable (for test-only callbacks)."""
    env = {**os.environ, "WANDB_MODE": wandb_mode, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([PTFT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"ptft {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def checkpoint_from(result: subprocess.CompletedProcess) -> str:
    """The checkpoint path ``ptft fit`` reports."""
    return next(line.split(" ", 2)[2] for line in result.stdout.splitlines() if line.startswith("ptft: checkpoint "))
