"""Errors for bad input that ptft detects itself; the ``ptft`` command prints them as one line."""


class PtftError(Exception):
    """Bad input, detected before it can do harm; the message names the file or config key."""

    latest: "PtftError | None" = None  # jsonargparse re-raises errors from __init__ as text only

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        PtftError.latest = self


class ConfigError(PtftError, ValueError):
    """A config value, or a file given by one, that cannot be used."""


class MissingPathError(PtftError, FileNotFoundError):
    """A file or folder named by the config does not exist or holds nothing usable."""


class CorruptImageError(PtftError, ValueError):
    """An image file that cannot be decoded."""


class OutputExistsError(PtftError, FileExistsError):
    """An output that would replace earlier results."""


class DivergenceError(PtftError, FloatingPointError):
    """A loss became NaN or infinite; the run stopped before the update that would spread it."""
