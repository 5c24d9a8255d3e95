"""Figure: how a recorded ToP search moved (`python -m studies.search_trajectory RECORD`), for reading why a run
landed where it did: the expected MACs of the sampled masks against the warmed-up target, with the deterministic
masks' measured MACs and the dev score at each evaluation; the Lagrangian multipliers; and each prune layer's
expected keep ratio. Reads `artifacts/metrics/experiments/RECORD.json` (a record with a `trajectory`, see
`studies.record`) and writes `RECORD-trajectory.png` beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from studies.experiment_file import EXPERIMENTS_DIR
from top.figures import pyplot, save_figure


def plot_trajectory(record: dict[str, Any], title: str, path: Path) -> None:
    """Three panels against the search step: MACs and dev score, multipliers, keep ratios per prune layer."""
    trajectory, history = record["trajectory"], record["history"]
    steps = [point["step"] for point in trajectory]
    figure, (macs, multipliers, keep) = pyplot().subplots(3, 1, figsize=(7, 9), sharex=True)
    macs.plot(steps, [point["expected_macs"] for point in trajectory], label="expected MACs (sampled masks)")
    macs.plot(steps, [point["target"] for point in trajectory], "--", label="target")
    search = [entry for entry in history if entry["phase"] == "search"]
    macs.plot([e["step"] for e in search], [e["macs_ratio"] for e in search], "o", label="measured MACs (evaluation)")
    score = macs.twinx()
    score.plot([e["step"] for e in history], [e["dev_score"] for e in history], "s:", color="black", label="dev score")
    score.set_ylabel("dev score")
    macs.set(ylabel="MACs ratio", title=title)
    macs.legend(fontsize=7, loc="upper right")
    for name in ("lambda1", "lambda2"):
        multipliers.plot(steps, [point[name] for point in trajectory], label=name)
    multipliers.set(ylabel="multiplier")
    multipliers.legend(fontsize=7)
    layers = record["prune"]["keep_ratios"]
    for position, layer in enumerate(layers):
        keep.plot(steps, [point[f"keep_{position}"] for point in trajectory], label=layer)
    keep.set(xlabel="search step", ylabel="expected keep ratio")
    keep.legend(fontsize=7)
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", help="a record name under artifacts/metrics/experiments, without .json")
    args = parser.parse_args(argv)
    path = EXPERIMENTS_DIR / f"{args.record}.json"
    if not path.is_file():
        sys.exit(f"error: no record {path}")
    record = json.loads(path.read_text(encoding="utf-8"))
    if "trajectory" not in record:
        sys.exit(f"error: {path} has no search trajectory (recorded before prune_live/trajectory.tsv existed)")
    plot_trajectory(record, f"ToP search, {args.record}", path.with_name(f"{args.record}-trajectory.png"))


if __name__ == "__main__":
    main()
