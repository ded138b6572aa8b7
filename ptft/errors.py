"""Errors for bad input that ptft detects itself; the ``ptft`` command prints them as one line."""

import re


class PtftError(Exception):
    """Bad input, detected before it can do harm; the message names the file or config key."""

    latest: "PtftError | None" = None  # jsonargparse re-raises errors from __init__ as text only
    exit_code = 2  # the ``ptft`` command's exit status: 2 for bad input, as for a bad command line

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        PtftError.latest = self


class ConfigError(PtftError, ValueError):
    """A config value, or a file given by one, that cannot be used."""


class MissingPathError(PtftError, FileNotFoundError):
    """A file or folder named by the config does not exist or holds nothing usable."""


class CorruptImageError(PtftError, ValueError):
    """An image file that cannot be decoded."""


class CorruptAudioError(PtftError, ValueError):
    """An audio file that cannot be decoded or holds no samples."""


class OutputExistsError(PtftError, FileExistsError):
    """An output that would replace earlier results."""


class DivergenceError(PtftError, FloatingPointError):
    """A loss became NaN or infinite; the run stopped before any checkpoint held the update that would spread it."""

    exit_code = 1  # the run failed; its input may be fine


class SweepError(PtftError, ValueError):
    """A sweep YAML or ``ptft sweep`` argument that cannot be used; the message names the key."""


class WriteFailedError(PtftError, OSError):
    """A file (a checkpoint) could not be written because the disk is full; the message names the
    file and says whether an earlier file at that path is intact."""

    exit_code = 1  # the run failed; its input may be fine


def one_line(error: BaseException) -> str:
    """The message of ``error`` as one line. A DataLoader worker's error reaches the main process
    re-raised as the same class with the worker's whole traceback as its message; this keeps
    the original message (the traceback's last line) only."""
    text = str(error)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        match = re.match(r"^[\w.]+: (.*)$", last)
        text = match.group(1) if match else last
    return " ".join(text.split())
