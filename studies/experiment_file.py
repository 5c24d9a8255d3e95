"""Where the one-off studies (`python -m studies.<study>`) write their results, and what every such file says."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline import METRICS_DIR, PREPARED_DIR, TEACHER_DIR
from top.atomic import write_json
from top.backbone import check_task_head
from top.bench import machine_info
from top.data.prepare import load_prepared
from top.data.tasks import TaskSpec

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


def resumable_study(prefix: str, prepared_dir: str | Path, teacher_dir: str | Path) -> tuple[TaskSpec, str, dict]:
    """For a training study on a prepared task: the task (checked against the teacher's head), the record's name
    ``PREFIX-<task>`` and the runs that record already holds, which a rerun keeps instead of training again."""
    spec, _, _ = load_prepared(prepared_dir)
    check_task_head(Path(teacher_dir), spec)
    name = f"{prefix}-{spec.name}"
    record = EXPERIMENTS_DIR / f"{name}.json"
    runs = json.loads(record.read_text(encoding="utf-8"))["runs"] if record.is_file() else {}
    return spec, name, runs


def study_parser(doc: str, settings: Iterable[str], targets: Iterable[float]) -> argparse.ArgumentParser:
    """The command line of a training study: where the task and teacher are, which settings and targets to run."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--prepared-dir", default=PREPARED_DIR, help="a prepared task (the prepare stage's output)")
    parser.add_argument("--teacher-dir", default=TEACHER_DIR, help="a fine-tuned teacher for that task")
    parser.add_argument("--settings", nargs="+", choices=list(settings), default=list(settings))
    parser.add_argument("--targets", nargs="+", type=float, default=list(targets))
    return parser
