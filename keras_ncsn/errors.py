"""User-facing errors: scripts print these as one line and exit non-zero.

Anything raised as an `NCSNError` describes a problem with the user's input (config,
data, checkpoint, export folder) in words that name it; anything else is a bug.
"""


class NCSNError(Exception):
    """Base class of errors caused by bad user input."""


class ConfigError(NCSNError, ValueError):
    """A bad preset name, `--set` key or config value."""


class DataError(NCSNError, ValueError):
    """Missing, empty or malformed training data."""


class ImageShapeError(DataError):
    """Images whose size or channel count differs from the config's; the message names the
    --set that fits, and `where` and `shape` (height, width, channels) let a script that
    takes other flags word its own."""

    def __init__(self, message: str, where: str, shape: tuple[int, int, int]) -> None:
        super().__init__(message)
        self.where, self.shape = where, shape


class CheckpointError(NCSNError):
    """A missing, corrupt or incompatible checkpoint or run folder."""


class TrainingError(NCSNError):
    """Training diverged (NaN or infinite loss)."""


class ExportError(NCSNError):
    """A missing, incomplete or unreadable export folder (scripts/export.py output)."""


class OutputError(NCSNError):
    """An output path that would replace something the program did not write, or that is
    of the wrong kind (a file where a folder belongs, or a folder where a file does)."""
