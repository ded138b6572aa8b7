"""A foreign state dict consumed key by key, so that no tensor is silently left behind."""

from __future__ import annotations

import re

import torch

from ptft.errors import ConfigError


def listing(keys: list[str], limit: int = 10) -> str:
    """``a, b, c ... and N more``: a key list short enough for a one-line error."""
    shown = ", ".join(keys[:limit])
    return shown + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


class SourceWeights:
    """The tensors of a Hugging Face, timm or torchvision checkpoint, each of which a converter
    either takes (maps into a ptft module) or drops on purpose (a pooler, an MLM head).

    :meth:`finish` raises a ConfigError naming every tensor that was neither, so a checkpoint that
    holds more than the converter understands is refused instead of half-loaded.
    """

    def __init__(self, state: dict[str, torch.Tensor], source: str) -> None:
        self.state = state
        self.source = source
        self.used: set[str] = set()
        self.dropped: list[str] = []

    def __contains__(self, key: str) -> bool:
        return key in self.state

    def keys(self, pattern: str = "") -> list[str]:
        """Keys that match the regular expression ``pattern`` from their start."""
        return sorted(k for k in self.state if re.match(pattern, k))

    def take(self, key: str) -> torch.Tensor:
        """The tensor under ``key``; a ConfigError naming the key when the checkpoint lacks it."""
        if key not in self.state:
            raise ConfigError(f"{self.source}: tensor {key!r} is missing (its config says the model has it)")
        self.used.add(key)
        return self.state[key]

    def drop(self, pattern: str) -> None:
        """Drop, on purpose, every key matching the regular expression ``pattern`` from its start."""
        for key in self.keys(pattern):
            if key not in self.used:
                self.used.add(key)
                self.dropped.append(key)

    def finish(self) -> list[str]:
        """The dropped keys; a ConfigError naming any key that was neither taken nor dropped."""
        unmapped = sorted(set(self.state) - self.used)
        if unmapped:
            raise ConfigError(f"{self.source}: {len(unmapped)} tensors have no place in the ptft backbone and are not a "
                              f"part ptft drops on purpose: {listing(unmapped)}")
        return sorted(self.dropped)
