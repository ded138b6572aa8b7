"""Listing the data files under a folder without ever leaving it.

A symlink is followed only while it resolves inside the folder, so no file outside
``<root>/<split>/<class>/`` can become a sample of that split and class (a link ``loop -> ../..``
would otherwise bring in every split). The folder itself may be a symlink.
"""

from __future__ import annotations

import os
from pathlib import Path

from ptft.errors import ConfigError


def folder_files(folder: Path, extensions: tuple[str, ...], skip_corrupt: bool) -> tuple[list[str], list[str]]:
    """The files under ``folder`` whose names end with one of ``extensions`` (case-insensitive,
    sorted, depth first), and the symlinks not followed, as ``<link>: <why>`` lines: those that
    resolve outside ``folder`` and those that loop back to a folder above them. Without
    ``skip_corrupt`` such a link is a :class:`ConfigError` naming it."""
    inside = os.path.realpath(folder)
    files: list[str] = []
    skipped: list[str] = []

    def walk(directory: str, real: str, above: set[str]) -> None:
        with os.scandir(directory) as entries:
            entries = sorted(entries, key=lambda e: e.name)
        for entry in entries:
            wanted = entry.name.lower().endswith(extensions)
            target, is_dir = os.path.join(real, entry.name), entry.is_dir(follow_symlinks=False)
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                is_dir = os.path.isdir(target)
                if not (wanted or is_dir):
                    continue
                if os.path.commonpath([inside, target]) != inside:
                    skipped.append(f"{entry.path}: symlink to {target}, outside its folder {folder}")
                    continue
                if target in above:
                    skipped.append(f"{entry.path}: symlink loop (it points back to a folder above it)")
                    continue
            if is_dir:
                walk(entry.path, target, above | {target})
            elif wanted:
                files.append(entry.path)

    walk(str(folder), inside, {inside})
    if skipped and not skip_corrupt:
        raise ConfigError(f"{skipped[0]}; remove the link, or set data.skip_corrupt=true to skip it")
    return files, skipped
