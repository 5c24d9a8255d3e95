"""Saving matplotlib figures headless and atomically (a crash never leaves half a PNG for DVC or the README)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from top.atomic import atomic_file


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: stages run without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> None:
    figure.tight_layout()
    with atomic_file(path) as staging:
        figure.savefig(staging, dpi=120)
    pyplot().close(figure)
