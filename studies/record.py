"""Record a finished run as one JSON file under artifacts/metrics/experiments/, kept in git.

`python -m studies.record NAME --why "..."` after a `dvc repro` (or `dvc exp run`) in a checkout: the file holds
the code commit, the params that differ from the committed params.yaml, the metrics of every stage that
`dvc status` calls up to date (a stale stage's metrics file belongs to another run, so it is only named) and the
ToP trajectory. Why: `dvc exp show` forgets an experiment once its workspace is gone, and a reported figure must
point at a file anyone can open and a command anyone can rerun.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline import EXPERIMENT_NAME, FLEX_STAGES, METRICS_DIR, PARAMS_FILE, PRUNE_LIVE_DIR, TOP_STAGES, metrics_path
from top.atomic import write_json
from top.errors import TopError

HISTORY_FILE = f"{PRUNE_LIVE_DIR}/history.tsv"
TRAJECTORY_FILE = f"{PRUNE_LIVE_DIR}/trajectory.tsv"
MISSING = object()


def changed_params(committed: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``key=value`` for every dotted key whose value differs from the committed params (new keys included)."""
    changes = []
    for key, value in current.items():
        dotted = f"{prefix}{key}"
        before = committed.get(key, MISSING)
        if isinstance(value, dict) and isinstance(before, dict):
            changes += changed_params(before, value, f"{dotted}.")
        elif before is MISSING or value != before:
            changes.append(f"{dotted}={json.dumps(value)}")
    return changes


def read_history(path: Path) -> list[dict[str, Any]]:
    """A ToP training log (one row per evaluation or trajectory point); numbers as floats, the phase as text,
    empty cells dropped."""
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            {key: value if key == "phase" else float(value) for key, value in row.items() if value != ""}
            for row in csv.DictReader(handle, delimiter="\t")
        ]


def experiment_record(root: Path, command: str, why: str) -> dict[str, Any]:
    """The record of the run in checkout ``root``; only metrics that match its code and params go in."""

    def tool(*args: str) -> str:
        # This interpreter's tools (dvc) first on PATH, as `make` puts them.
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        result = subprocess.run(list(args), cwd=root, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TopError(f"record: {' '.join(args)} failed in {root}: {result.stderr.strip()[-500:]}")
        return result.stdout

    committed = yaml.safe_load(tool("git", "show", f"HEAD:{PARAMS_FILE}"))
    current = yaml.safe_load((root / PARAMS_FILE).read_text(encoding="utf-8"))
    stale = set(json.loads(tool("dvc", "status", "--json") or "{}"))
    ran = [stage for stage in TOP_STAGES + FLEX_STAGES if stage not in stale and (root / metrics_path(stage)).is_file()]
    if not ran:
        raise TopError(f"record: no up-to-date stage metrics under {root / METRICS_DIR}; run the pipeline first")
    metrics = {stage: json.loads((root / metrics_path(stage)).read_text(encoding="utf-8")) for stage in ran}
    uncommitted_code = tool("git", "status", "--porcelain", "--", "top", "pipeline", "dvc.yaml").strip()
    record: dict[str, Any] = {
        "command": command,
        "code_commit": tool("git", "rev-parse", "--short", "HEAD").strip()
        + (" (uncommitted code)" if uncommitted_code else ""),
        "params_changed_from_defaults": changed_params(committed, current),
        "why": why,
        "stale_stages_not_recorded": sorted(stale),
        **metrics,
    }
    if (root / HISTORY_FILE).is_file() and "prune" in metrics:
        record["prune"] = {key: value for key, value in metrics["prune"].items() if key != "history"}
        record["history"] = read_history(root / HISTORY_FILE)
        if (root / TRAJECTORY_FILE).is_file():
            record["trajectory"] = read_history(root / TRAJECTORY_FILE)
    return record


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="file name under artifacts/metrics/experiments/ (without .json)")
    parser.add_argument("--why", required=True, help="what the run measures, in a sentence")
    parser.add_argument("--command", default="dvc repro", help="the command that produced the metrics")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout that ran it")
    args = parser.parse_args(argv)
    if not EXPERIMENT_NAME.match(args.name):
        parser.error(f"NAME must be letters, digits, '.', '_' or '-' (at most 64), got {args.name!r}")
    try:
        record = experiment_record(args.root, args.command, args.why)
    except TopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    target = args.root / METRICS_DIR / "experiments" / f"{args.name}.json"
    write_json(target, record)
    print(target)


if __name__ == "__main__":
    main(sys.argv[1:])
