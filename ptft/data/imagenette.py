"""Find Imagenette in the local data folder, or download it with torchvision."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets import Imagenette


def find_or_download_imagenette(data_dir: str | os.PathLike | None = None, size: str = "160px") -> Path:
    """An ImageFolder-style Imagenette root (``train/`` and ``val/`` with one folder per class).

    Looks for ``<data_dir>/imagenette`` and torchvision's ``imagenette2[-160|-320]`` folders
    (``data_dir`` defaults to ``$PTFT_DATA``, else ``./data``); when none is there, torchvision
    downloads Imagenette (``size``: ``full``, ``320px`` or ``160px``) into ``data_dir``.
    """
    data_dir = Path(data_dir or os.environ.get("PTFT_DATA") or "data")
    for name in ("imagenette", "imagenette2", "imagenette2-320", "imagenette2-160"):
        if (data_dir / name / "train").is_dir() and (data_dir / name / "val").is_dir():
            return data_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        Imagenette(str(data_dir), split=split, size=size, download=not (data_dir / _folder(size)).is_dir())
    return data_dir / _folder(size)


def _folder(size: str) -> str:
    return {"full": "imagenette2", "320px": "imagenette2-320", "160px": "imagenette2-160"}[size]
