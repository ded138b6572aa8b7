"""Temporary files written beside their target, then renamed into place.

A temporary file is named ``.<name>.tmp-<host>-<pid>`` (:func:`temp_path`), so that one left by a
killed process (SIGKILL, OOM, node loss: nothing runs to remove it) is recognised and removed by the
next run or export into that folder (:func:`remove_stale_temp_files`); only files of processes that
are gone from this host are removed, never those of a live process or of another host sharing the
folder. Temporary files are created with ``open()``, so the files renamed from them have the
permissions of any new file (the umask's).
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

from ptft.errors import OutputExistsError

log = logging.getLogger(__name__)
TEMP_NAME = re.compile(r"\..+\.tmp-(?P<host>.+)-(?P<pid>\d+)")


def temp_path(path: str | os.PathLike) -> Path:
    """Where ``path`` is written before it is renamed into place: ``.<name>.tmp-<host>-<pid>`` in its folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def process_is_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this host (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Removes the temporary files (:func:`temp_path`) in ``folder`` whose process is gone from this
    host, saying so in one line each; returns them."""
    folder, host = Path(folder), socket.gethostname()
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        match = TEMP_NAME.fullmatch(path.name)
        if match is None or match["host"] != host or not path.is_file() or not process_is_gone(int(match["pid"])):
            continue
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        log.warning(f"ptft: removed {path} ({size / 1e6:.1f} MB), left by process {match['pid']}, which was killed while writing it")
        removed.append(path)
    return removed


def write_text_output(out: str | os.PathLike, text: str, overwrite: bool) -> None:
    """Write a command's output file ``out`` atomically (a temporary file renamed into place): an
    existing file is replaced only with ``overwrite``, and a failure leaves it as it was."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    tmp = temp_path(out)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_files(folder: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into ``folder``: each under its temporary name, all fsynced,
    then renamed into place in the order given (put the file that makes the folder complete last),
    so a failure before the renames leaves the folder as it was. Temporary files of a killed
    earlier writer are removed first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(folder)
    tmp = {name: temp_path(folder / name) for name in files}
    try:
        for name, data in files.items():
            with open(tmp[name], "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for name in files:
            os.replace(tmp[name], folder / name)
    finally:
        for file in tmp.values():
            file.unlink(missing_ok=True)
