"""Figure: a learning curve of the ToP search (`python -m studies.search_length_curve OUTPUT RECORD...`), for
reading whether a longer search closes the gap to the teacher: records of one teacher and budget that differ only in
search length, each run's kept ToP model (the best dev score within the budget), its search's last evaluation and
its fine-tuning's last one, against the search steps, beside the teacher and the baselines at equal MACs. Reads
`artifacts/metrics/experiments/RECORD.json` (records with `prune`, `baselines` and `history`, see `studies.record`)
and writes `OUTPUT.png` beside them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from pipeline import EXPERIMENT_NAME
from studies.experiment_file import EXPERIMENTS_DIR
from top.figures import pyplot, save_figure

REQUIRED = ("prune", "baselines", "history")


def curve_point(record: dict[str, Any]) -> dict[str, float]:
    """One record's search length and scores, in the baselines' metric."""
    search = [entry for entry in record["history"] if entry["phase"] == "search"]
    finetune = [entry for entry in record["history"] if entry["phase"] == "finetune"]
    baselines = record["baselines"]
    return {
        "search_steps": search[-1]["step"],
        "search_end": search[-1]["dev_score"],
        "finetune_end": finetune[-1]["dev_score"] if finetune else math.nan,
        "top": baselines["top"],
        "static_topk": baselines["static_topk"],
        "truncation": baselines["truncation"],
        "teacher": baselines["teacher"],
    }


def plot_curve(records: list[dict[str, Any]], title: str, path: Path) -> None:
    """Scores against search steps: ToP kept, at the search's end and after fine-tuning, the baselines, the teacher."""
    points = sorted((curve_point(record) for record in records), key=lambda point: point["search_steps"])
    steps = [point["search_steps"] for point in points]
    figure, axes = pyplot().subplots(figsize=(7, 4.5))
    labels = {
        "top": "ToP, the model kept",
        "search_end": "ToP, the search's last evaluation",
        "finetune_end": "ToP, fine-tuned at the budget",
        "truncation": "truncation at equal MACs",
        "static_topk": "static top-k at equal MACs",
    }
    for key, label in labels.items():
        axes.plot(steps, [point[key] for point in points], "o-" if key == "top" else "o:", label=label)
    teachers = sorted({point["teacher"] for point in points})
    for teacher in teachers:
        axes.axhline(teacher, color="black", linestyle="--", linewidth=1)
    axes.plot([], [], "k--", linewidth=1, label="teacher")
    axes.set(xlabel="search steps", ylabel=records[0]["baselines"]["metric"], title=title)
    axes.legend(fontsize=7)
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="the figure's name under artifacts/metrics/experiments, without .png")
    parser.add_argument("records", nargs="+", help="record names under artifacts/metrics/experiments, without .json")
    args = parser.parse_args(argv)
    if not EXPERIMENT_NAME.match(args.output):
        parser.error(f"OUTPUT must be a name (letters, digits, '.', '_' or '-'), not a path, got {args.output!r}")
    records = []
    for name in args.records:
        path = EXPERIMENTS_DIR / f"{name}.json"
        if not path.is_file():
            sys.exit(f"error: no record {path}")
        record = json.loads(path.read_text(encoding="utf-8"))
        if missing := [part for part in REQUIRED if part not in record]:
            sys.exit(f"error: {path} has no {', '.join(missing)}: record a run of the prune and baselines stages")
        records.append(record)
    plot_curve(records, f"ToP search length, {args.output}", EXPERIMENTS_DIR / f"{args.output}.png")


if __name__ == "__main__":
    main()
