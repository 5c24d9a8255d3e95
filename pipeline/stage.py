"""What every stage entry point shares: logging set-up, params loading, and turning user errors into
one clear line on stderr (exit code 2) instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from top.errors import TopError
from top.params import Params, load_params

PARAMS_FILE = "params.yaml"
METRICS_DIR = "artifacts/metrics"


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


def metrics_path(stage: str) -> str:
    return f"{METRICS_DIR}/{stage}.json"
