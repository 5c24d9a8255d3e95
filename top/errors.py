"""Errors a user can fix themselves.

Every stage catches ``TopError`` at its entry point and prints the message alone, so bad params, missing
data or a wrong model directory never surface as a traceback from deep inside torch or pandas.
"""


class TopError(Exception):
    """Base class: the message names the problem and, where there is one, the file and line."""


class ParamsError(TopError):
    """A params.yaml value is unknown, missing, of the wrong type or out of range."""


class DataError(TopError):
    """Input data is missing or malformed (missing file, wrong column count, unknown label, empty split)."""


class ModelDirError(TopError):
    """A model name or directory does not hold a usable BERT checkpoint."""


class ModelBuildError(TopError):
    """A model cannot be built for the prepared task: its head does not fit the task, or the build itself fails."""
