"""Find Imagenette in the local data folder, or download it with torchvision."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets import Imagenette

from ptft.errors import MissingPathError

FOLDERS = ("imagenette", "imagenette2", "imagenette2-320", "imagenette2-160")


def find_or_download_imagenette(data_dir: str | os.PathLike | None = None, size: str = "160px") -> Path:
    """An ImageFolder-style Imagenette root (``train/`` and ``val/`` with one folder per class).

    Looks for ``<data_dir>/imagenette`` and torchvision's ``imagenette2[-160|-320]`` folders
    (``data_dir`` defaults to ``$PTFT_DATA``, else ``./data``); when none is there, torchvision
    downloads Imagenette (``size``: ``full``, ``320px`` or ``160px``) into ``data_dir``.
    """
    data_dir = Path(data_dir or os.environ.get("PTFT_DATA") or "data")
    for name in FOLDERS:
        if (data_dir / name / "train").is_dir() and (data_dir / name / "val").is_dir():
            return data_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        for split in ("train", "val"):
            Imagenette(str(data_dir), split=split, size=size, download=not (data_dir / _folder(size)).is_dir())
    except OSError as error:  # no network (URLError), a full disk, ...
        raise MissingPathError(f"Imagenette is not in {data_dir} (looked for {', '.join(f'{n}/' for n in FOLDERS)} with train/ and val/) "
                               f"and downloading it failed ({error}); set PTFT_DATA to a folder that holds imagenette/train and "
                               "imagenette/val") from None
    return data_dir / _folder(size)


def _folder(size: str) -> str:
    return {"full": "imagenette2", "320px": "imagenette2-320", "160px": "imagenette2-160"}[size]
