"""Where ptft looks for data: config paths, resolved against ``$PTFT_DATA`` when relative."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_data_path(path: str | os.PathLike) -> Path:
    """An absolute path as is; a relative one against the working directory if it exists there,
    else against ``$PTFT_DATA`` (the local data folder) when that variable is set."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    data_dir = os.environ.get("PTFT_DATA")
    if data_dir:
        return Path(data_dir).expanduser() / path
    return path
