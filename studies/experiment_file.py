"""Where the one-off studies (`python -m studies.<study>`) write their results, and what every such file says."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import METRICS_DIR
from top.atomic import write_json
from top.bench import machine_info

EXPERIMENTS_DIR = Path(METRICS_DIR) / "experiments"


def write_experiment(name: str, doc: str, threads: int, fields: dict[str, Any]) -> Path:
    """Write a study's result as ``artifacts/metrics/experiments/NAME.json``.

    The file says why it exists (the first paragraph of the study's docstring, which names the command that
    reruns it) and on what machine and thread count, since its seconds mean nothing without both.
    """
    target = EXPERIMENTS_DIR / f"{name}.json"
    write_json(target, {"why": doc.split("\n\n")[0], **fields, "machine": machine_info(threads)})
    return target


def interleaved_medians(steps: dict[str, Callable[[], float]], calls: int) -> dict[str, float]:
    """Median seconds of each timed step over ``calls`` rounds that run every step once, in turn, after one
    warm-up round: a slow spell of the machine then hits all of them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for call in range(calls + 1):
        for name, step in steps.items():
            elapsed = step()
            if call:
                seconds[name].append(elapsed)
    return {name: round(statistics.median(values), 3) for name, values in seconds.items()}
