"""Write a benchmark's section of ``benchmarks/RESULTS.md``, with the machine it ran on.

Each benchmark owns one section, delimited by HTML comments, replaced when it runs again.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TRAINER_CONFIGS = Path(__file__).resolve().parent.parent / "configs/trainer"
HEADER = "# Benchmark results\n\nWritten by the scripts in `benchmarks/`; each section says how to reproduce it.\n"


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; the architecture elsewhere): VMs of one
    machine type can differ in it, and in speed."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{platform.machine()} {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line describing the hardware and software the numbers come from."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_model()}, {os.cpu_count()} CPU cores, {device}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def trainer_args(gpu: bool) -> list[str]:
    """The trainer presets of a benchmark's ``ptft fit`` runs: one GPU with bf16-mixed (``--gpu``), or one CPU process in fp32."""
    presets = ("gpu.yaml", "bf16.yaml") if gpu else ("cpu.yaml",)
    return [arg for preset in presets for arg in ("-c", str(TRAINER_CONFIGS / preset))]


def write_section(name: str, body: str, path: Path = RESULTS) -> Path:
    """Replace (or append) the section ``name`` of the results file with ``body``."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    text = path.read_text() if path.exists() else HEADER
    section = f"{start}\n{body.rstrip()}\n\n_Measured {datetime.now():%Y-%m-%d} on {machine()}._\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    return path


def report(name: str, table: str, quick: bool) -> None:
    """Print a benchmark's table and, unless it is a ``--quick`` smoke run, write it as section ``name``."""
    print("\n" + table)
    if not quick:
        print(f"\nwrote {write_section(name, table)}")


def rows_from_logs(*logs: str | Path) -> dict:
    """The results a benchmark printed as JSON lines (``{"<part>": {...}}``, one per part) in the
    stdout logs of earlier runs, merged: what ``--report-from`` rebuilds a table from."""
    rows: dict = {}
    for log in logs:
        for line in Path(log).read_text().splitlines():
            if line.startswith('{"'):
                rows.update(json.loads(line))
    return rows
