"""Prefect flows: `top` chains the DVC stages of one run; `top-sweep` runs it at several MACs targets.

Prefect orchestrates (parameters, retries, logs, a summary artifact per run); DVC decides what has to run and
versions it: every stage is a `dvc repro` in the run's own workspace clone, and the run ends as a DVC
experiment in the project. `dvc repro` alone does the same job without Prefect.

Paths the user passes (``project``, a ``data.data_dir`` or local ``model.backbone`` override, $TOP_DATA_DIR)
may be relative: to the flow's working directory, which for a served deployment is the project (where
`make serve` runs it). The flow makes them absolute before anything runs in a clone under .work/runs.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.sweep import sweep_table, write_sweep
from flows.workspace import (
    StageFailed,
    create_workspace,
    read_metrics,
    remove_workspace,
    reproduce_stage,
    save_experiment,
)
from pipeline import FLEX_STAGES, TOP_STAGES
from top.data.paths import absolute, absolute_env, absolute_params, recorded_paths, with_given

PROJECT_DIR = Path(__file__).resolve().parents[1]
# A seconds-to-minutes smoke run of the whole pipeline on a subset (documented in the README).
QUICK_OVERRIDES: dict[str, Any] = {
    "data.max_train_samples": 256,
    "data.max_eval_samples": 128,
    "teacher.epochs": 1,
    "prune.epochs": 4,
    "prune.eval_steps": 8,
    "prune.macs_tolerance": 0.03,
    "quantize.calibration_batches": 2,
    "benchmark.batch_sizes": [1, 8],
    "benchmark.examples": 32,
    "benchmark.repetitions": 5,
    "benchmark.compile": False,
    "flex.importance_samples": 32,
    "flex.gate_epochs": 2,
    "flex.width_map_grid": [0.25, 0.5, 1.0],
    "flex.thresholds": [0.0, 0.3],
}


def _retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient failures (a killed process, a busy file); a bad param or missing data fails at once."""
    error = state.result(raise_on_failure=False)
    return not (isinstance(error, StageFailed) and error.user_error)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_unless_user_error, task_run_name="{stage}")
def stage_task(workspace: Path, stage: str, env: dict[str, str]) -> bool:
    logger = get_run_logger()
    try:
        result = reproduce_stage(workspace, stage, env)
    except StageFailed as failure:
        logger.error("%s", failure)
        raise
    logger.info("%s: %s\n%s", stage, "ran" if result.ran else "up to date, skipped", result.log[-3000:])
    return result.ran


@task
def workspace_task(
    project: Path, name: str, overrides: dict[str, Any], env: dict[str, str]
) -> tuple[Path, dict[str, str]]:
    return create_workspace(project, name, overrides, env)


@task
def record_task(workspace: Path, name: str, stages: tuple[str, ...]) -> dict[str, Any]:
    save_experiment(workspace, name, stages)
    stages = ("teacher", "prune", "quantize", "benchmark", "flex")
    metrics = {stage: read_metrics(workspace, stage) for stage in stages}
    create_markdown_artifact(markdown=run_summary(name, metrics), key="top-run-summary", description=name)
    return metrics


def run_overrides(
    task_name: str, target_macs: float, int8: bool, quick: bool, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Flow parameters as params.yaml keys; explicit ``overrides`` win."""
    base = {"data.task": task_name, "prune.target_macs": target_macs, "quantize.enabled": int8}
    return base | (QUICK_OVERRIDES if quick else {}) | overrides


def absolute_inputs(
    project: str | None,
    overrides: dict[str, Any],
    given_paths: Mapping[str, str] | None = None,
    base: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> tuple[Path, dict[str, Any], dict[str, str]]:
    """The project directory and ``overrides`` with every path absolute, relative ones taken relative to
    ``base`` (default: the working directory), and what the stages' environment must change: path variables
    made absolute, and the form in which each path was given (``given_paths`` from a parent flow included)."""
    base = base or Path.cwd()
    project_dir = absolute(project, base) if project else PROJECT_DIR
    overrides, given = absolute_params(overrides, base)
    env = with_given(absolute_env(environ, base), dict(given_paths or {}) | given)
    return project_dir, overrides, {key: value for key, value in env.items() if environ.get(key) != value}


@flow(name="top", log_prints=True)
def compress(
    task: str = "mrpc",
    target_macs: float = 0.5,
    int8: bool = True,
    quick: bool = False,
    overrides: dict[str, Any] | None = None,
    name: str | None = None,
    project: str | None = None,
    keep_workspace: bool = False,
    flex: bool = False,
    given_paths: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run every stage (with ``flex``, the Flexible BERT stages too) for one setting and record it as DVC
    experiment ``name`` (default: derived from the setting). ``given_paths`` (absolute path -> as the user gave
    it) is how a parent flow that made paths absolute lets a stage's error name them as given."""
    settings = run_overrides(task, target_macs, int8, quick, overrides or {}) | ({"flex.enabled": True} if flex else {})
    project_dir, settings, env = absolute_inputs(project, settings, given_paths)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    run_name = name or f"{task}-macs{target_macs:g}{'-int8' if int8 else ''}{'-quick' if quick else ''}-{stamp}"
    workspace, env = workspace_task(project_dir, run_name, settings, env)
    stages = TOP_STAGES + (FLEX_STAGES if flex else ())
    for stage in stages:
        stage_task(workspace, stage, env)
    metrics = record_task(workspace, run_name, stages)
    if not keep_workspace:
        remove_workspace(workspace)
    return {"name": run_name, **metrics}


@flow(name="top-sweep", log_prints=True)
def sweep(
    targets: list[float] | None = None,
    task: str = "mrpc",
    int8: bool = True,
    quick: bool = False,
    overrides: dict[str, Any] | None = None,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """`top` at each MACs target in turn (they share prepare and teacher through DVC), then one table and plot.
    Relative paths are resolved here, once, and handed to each run as absolute paths."""
    project_dir, overrides, env = absolute_inputs(project, overrides or {})
    given = recorded_paths(env)
    results = [
        compress(
            task=task,
            target_macs=target,
            int8=int8,
            quick=quick,
            overrides=overrides,
            project=str(project_dir),
            given_paths=given,
        )
        for target in (targets or [0.7, 0.5, 0.3])
    ]
    rows = sweep_table(results)
    markdown = write_sweep(rows, project_dir / "artifacts" / "sweeps" / task)
    create_markdown_artifact(markdown=markdown, key="top-sweep-table", description=f"{task} sweep")
    return rows


def run_summary(name: str, metrics: dict[str, Any]) -> str:
    """The run's headline numbers as a Markdown table for the Prefect UI."""
    prune, benchmark, quantize = metrics["prune"] or {}, metrics["benchmark"] or {}, metrics["quantize"] or {}
    metric = benchmark.get("metric", "")
    lines = [f"### {name}", "", "| quantity | value |", "|---|---|"]
    lines.append(f"| teacher dev {metric} | {prune.get('teacher', {}).get(metric, 'n/a')} |")
    lines.append(f"| ToP dev {metric} | {prune.get(metric, 'n/a')} |")
    lines.append(f"| MACs ratio (real lengths) | {prune.get('macs_ratio_real_lengths', 'n/a')} |")
    lines.append(f"| MACs ratio (padded) | {prune.get('macs_ratio_padded_max_length', 'n/a')} |")
    if quantize.get("enabled"):
        lines.append(f"| ToP INT8 dev {metric} | {quantize['top']['int8'].get(metric, 'n/a')} |")
    for key, entry in benchmark.get("summary", {}).items():
        lines.append(f"| speed-up {key} | {entry['speedup_vs_best_dense_fp32']} |")
        if entry.get("fastest_dense"):
            lines.append(f"| speed-up {key} vs {entry['fastest_dense']} | {entry['speedup_vs_fastest_dense']} |")
    if metrics.get("flex") and "skipped" in metrics["flex"]:  # disabled, or a QA or regression task
        lines.append(f"| Flexible BERT | skipped: {metrics['flex']['skipped']} |")
    elif metrics.get("flex"):
        best = metrics["flex"]["best_tradeoff"]
        lines.append(f"| Flexible BERT best trade-off {metric} (report half) | {best['report_score']} |")
        lines.append(f"| Flexible BERT best trade-off MACs ratio | {best['report_macs_ratio']} |")
    return "\n".join(lines) + "\n"
