"""The sizes a backbone (any :class:`~ptft.backbones.base.HandoffModule`) asks for, checked as it is
built: its weights are first counted on the meta device, where nothing is allocated, and a module
whose weights would not fit in the memory available is refused before any allocation (a ``width:
10000000`` would otherwise allocate and initialise until the machine runs out of memory). Sizes
torch cannot make (an overflow, a negative size, an allocation that fails) are refused too, each as
one :class:`~ptft.errors.ConfigError` naming the module's integer arguments."""

from __future__ import annotations

import contextlib
import itertools
import re
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ptft.errors import ConfigError

ADVICE = "give positive sizes whose weights fit in memory"


def available_memory() -> int | None:
    """Bytes of memory a new allocation may take (Linux ``MemAvailable``); None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def size_problem(error: BaseException) -> str | None:
    """What ``error`` says about a tensor torch could not make at the size asked; None for any other error."""
    text = " ".join(str(error).split())
    if match := re.search(r"allocate (\d+) bytes", text):
        return f"one of its tensors would take {int(match[1]) / 2**30:,.1f} GiB, more than the memory free"
    if "out of memory" in text.lower():
        return "its tensors do not fit in the memory free"
    if "overflow" in text.lower():
        return "a tensor's size overflows"
    if "negative dimension" in text:
        return "a tensor's size is negative"
    return None


def described(name: str, arguments: dict[str, Any]) -> str:
    """``Name(size=value, ...)`` with the integer arguments: the sizes a user would change."""
    return f"{name}({', '.join(f'{k}={v}' for k, v in arguments.items() if type(v) is int)})"


@contextlib.contextmanager
def sizes_named(name: str, arguments: dict[str, Any]) -> Iterator[None]:
    """Turn an error about a size torch cannot make, raised while building ``name``, into one
    ConfigError naming the module's sizes."""
    try:
        yield
    except (RuntimeError, TypeError) as error:
        problem = size_problem(error)
        if problem is None:
            raise
        raise ConfigError(f"{described(name, arguments)} cannot be built: {problem}; {ADVICE}") from None


def check_memory(build: Callable[[], nn.Module], name: str, arguments: dict[str, Any]) -> None:
    """Count the weights of ``build()`` on the meta device and refuse them when they would not fit
    in the memory available (on the CPU, where ptft builds its modules)."""
    available = available_memory()
    if available is None or torch.get_default_device().type != "cpu":
        return
    with torch.device("meta"):
        module = build()
    need = sum(t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers()))
    if need > available:
        raise ConfigError(f"{described(name, arguments)} cannot be built: its weights would take {need / 2**30:,.1f} GiB, "
                          f"more than the {available / 2**30:,.1f} GiB of memory available; {ADVICE}")
