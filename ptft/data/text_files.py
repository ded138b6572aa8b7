"""Reading UTF-8 text files in bounded memory, with errors that name the file and the byte."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from ptft.data.paths import resolve_data_path
from ptft.errors import ConfigError, MissingPathError

CHUNK_BYTES = 1 << 20
# A longer line is split at whitespace (or a character boundary): tokenizers take a long text at a cost
# that grows faster than its length (a 4 MB piece: over 500 MB), so pieces stay short.
MAX_PIECE_BYTES = 64 << 10


def check_text_file(path: Path, key: str) -> Path:
    """``path`` if it is a readable, non-empty file, else an error naming ``key``."""
    if not path.is_file():
        raise MissingPathError(f"{key}: {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ConfigError(f"{key}: {path} is empty")
    return path


def check_split_files(root: str, names: dict[str, str | None], key: str = "data.{split}_file") -> dict[str, Path]:
    """``{split: path}`` of the files given as ``data.<split>_file`` (None: no such split), each
    checked with :func:`check_text_file` (errors name ``key``, formatted with the split). Relative
    names are under ``root`` (resolved with :func:`~ptft.data.paths.resolve_data_path`), which must
    then be a folder; when every name is absolute, ``root`` is not used."""
    base = resolve_data_path(root)
    given = {split: Path(name).expanduser() for split, name in names.items() if name is not None}
    if any(not path.is_absolute() for path in given.values()) and not base.is_dir():
        raise MissingPathError(f"data.root: {base} is not a folder")
    return {split: check_text_file(base / path, key.format(split=split)) for split, path in given.items()}


def _decode(piece: bytes, path: Path, offset: int) -> str:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path} is not UTF-8 text: byte offset {offset + error.start} (0x{piece[error.start]:02x}); "
            "convert it to UTF-8, e.g. with iconv"
        ) from None


def read_text(path: Path) -> str:
    """The whole of a (small) UTF-8 file, without a byte order mark; non-UTF-8 bytes raise a
    ConfigError with the byte offset."""
    return _decode(path.read_bytes(), path, 0).removeprefix("\ufeff")


def split_lines(text: str) -> list[str]:
    r"""The lines of ``text`` without their ``\n`` / ``\r\n``; only newlines end a line (not the
    other characters ``str.splitlines`` splits at, which would shift parallel files out of line)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _split_point(buffer: bytes) -> int:
    """Where to cut an over-long line: before its last whitespace (which stays with the next word,
    as a byte-level BPE reads it), else at a character boundary."""
    cut = max(buffer.rfind(b" ", 0, MAX_PIECE_BYTES), buffer.rfind(b"\t", 0, MAX_PIECE_BYTES))
    if cut > 0:
        return cut
    cut = MAX_PIECE_BYTES
    while cut > 0 and buffer[cut] & 0xC0 == 0x80:  # never inside a multi-byte character
        cut -= 1
    return cut or MAX_PIECE_BYTES  # continuation bytes only: not UTF-8, which decoding the piece reports


def read_lines(path: Path) -> Iterator[tuple[str, bool]]:
    """``(text, ends_line)`` pieces of a UTF-8 file, without the newline, read in 1 MB chunks:
    memory stays bounded whatever the file's size. A line longer than 64 KB comes in several pieces
    (``ends_line`` False for all but the last), cut before whitespace. Non-UTF-8 bytes raise a
    ConfigError with the byte offset."""
    offset = 0  # file offset of buffer[0]
    buffer = b""
    with open(path, "rb") as file:
        while True:
            chunk = file.read(CHUNK_BYTES)
            buffer += chunk
            start = 0
            while True:
                end = buffer.find(b"\n", start)
                if end < 0:
                    break
                yield _decode(buffer[start:end].removesuffix(b"\r"), path, offset + start), True
                start = end + 1
            buffer, offset = buffer[start:], offset + start
            while len(buffer) > MAX_PIECE_BYTES:
                cut = _split_point(buffer)
                yield _decode(buffer[:cut], path, offset), False
                buffer, offset = buffer[cut:], offset + cut
            if not chunk:
                break
    if buffer:
        yield _decode(buffer, path, offset), True


def file_digest(path: Path) -> str:
    """BLAKE2b of a file's contents (streamed)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$PTFT_CACHE`` if set, else ``~/.cache/ptft``: data folders may be read-only."""
    return Path(os.environ.get("PTFT_CACHE") or Path.home() / ".cache" / "ptft").expanduser()
