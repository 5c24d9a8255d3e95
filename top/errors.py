"""Errors a user can fix themselves.

Every stage catches ``TopError`` at its entry point and prints the message alone, so bad params, missing
data or a wrong model directory never surface as a traceback from deep inside torch or pandas.
"""


def one_line(exc: BaseException, limit: int = 400) -> str:
    """A third-party exception as one short line (type and message, white space folded) for a ``TopError``."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
