"""The DVC stages, one module each (``python -m pipeline.<stage>``), and the plumbing they share.

The paths below are the ones dvc.yaml declares. ``run_stage`` loads and validates params.yaml and turns a user
error (bad params, missing data) into one line on stderr with exit code 2 instead of a traceback; the
orchestration reads that code to skip retries that cannot help.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from top.errors import DataError, TopError
from top.params import Params, load_params

PARAMS_FILE = "params.yaml"
METRICS_DIR = "artifacts/metrics"
PREPARED_DIR = "data/prepared"
TEACHER_DIR = "artifacts/teacher"
TEACHER_LIVE_DIR = "artifacts/teacher_live"
# Resumable training state of every stage that trains (a subdirectory each), outside every DVC output: DVC
# deletes a stage's outputs before rerunning it, and resume needs these.
CHECKPOINT_ROOT = "artifacts/checkpoints"
PRUNED_DIR = "artifacts/pruned"
PRUNE_LIVE_DIR = "artifacts/prune_live"
INT8_DIR = "artifacts/int8"
# FP32 source of each INT8 model; the benchmark uses the same names.
INT8_SOURCES = {"teacher": Path(TEACHER_DIR), "top": Path(PRUNED_DIR)}
FLEX_DIR = "artifacts/flex"
# The ToP model exported to ONNX, FP32 and ONNX Runtime INT8 (written by the benchmark, which times them).
ONNX_DIR = "artifacts/onnx"
# The ToP chain, in dvc.yaml order; Flexible BERT's stages run only when `flex.enabled` is true.
TOP_STAGES = ("prepare", "teacher", "prune", "baselines", "quantize", "benchmark")
FLEX_STAGES = ("flex", "flex_benchmark")
# A DVC experiment or experiment-record name: safe as a file and a git ref name.
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def run_stage(name: str, body: Callable[[Params], None]) -> None:
    """Run ``body`` with validated params; exit 2 with the error's message if the user can fix it."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        body(load_params(PARAMS_FILE))
    except TopError as exc:
        print(f"error: stage {name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def metrics_path(stage: str) -> Path:
    return Path(METRICS_DIR) / f"{stage}.json"


def read_stage_metrics(stage: str) -> dict[str, Any]:
    """Another stage's metrics file, or a one-line error naming the stage to run first."""
    path = metrics_path(stage)
    if not path.is_file():
        raise DataError(f"{path} not found: run the {stage} stage first")
    return json.loads(path.read_text(encoding="utf-8"))
