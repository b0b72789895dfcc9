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


class CheckpointError(NCSNError):
    """A missing, corrupt or incompatible checkpoint or run folder."""


class TrainingError(NCSNError):
    """Training diverged (NaN or infinite loss)."""


class ExportError(NCSNError):
    """A missing, incomplete or unreadable export folder (scripts/export.py output)."""
