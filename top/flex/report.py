"""What the flex stage shows people: every dynamic point as a CSV for `dvc plots`, and one PNG."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from top.atomic import atomic_directory, atomic_file
from top.figures import pyplot, save_figure

POINT_COLUMNS = (
    "map",
    "threshold",
    "select_score",
    "select_macs_ratio",
    "report_score",
    "report_macs_ratio",
    "mean_exit_depth",
)


def write_points(points: list[dict[str, Any]], path: Path) -> None:
    with atomic_file(path) as staging, staging.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=POINT_COLUMNS)
        writer.writeheader()
        for point in points:
            writer.writerow({**point, "map": "/".join(f"{width:g}" for width in point["map"])})


def plot_flex(metrics: dict[str, Any], points: list[dict[str, Any]], path: Path) -> None:
    """Dev score (report part) against MACs: static subnets with and without grafting, every dynamic point,
    the dynamic Pareto front, the chosen trade-off and the teacher."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 5))
    axis.scatter(
        [p["report_macs_ratio"] for p in points],
        [p["report_score"] for p in points],
        s=6,
        color="0.8",
        label="dynamic (all maps x thresholds)",
    )
    front = metrics["dynamic_front"]
    axis.plot(
        [p["report_macs_ratio"] for p in front],
        [p["report_score"] for p in front],
        color="C3",
        marker=".",
        label="dynamic Pareto front",
    )
    for name, marker in (("grafted", "o"), ("plain", "s")):
        grid = metrics["grids"].get(name)
        if grid:
            axis.scatter(
                [r["macs_ratio"] for r in grid],
                [r["report_score"] for r in grid],
                marker=marker,
                facecolors="none",
                edgecolors="C0" if name == "grafted" else "C1",
                label=f"static subnets ({name})",
            )
    best = metrics["best_tradeoff"]
    axis.scatter(
        [best["report_macs_ratio"]],
        [best["report_score"]],
        marker="*",
        s=180,
        color="C2",
        zorder=5,
        label="best trade-off (chosen on select half)",
    )
    axis.axhline(metrics["teacher"]["report"], color="k", linestyle="--", linewidth=1, label="teacher")
    axis.set(
        xlabel="encoder MACs / dense (real lengths)",
        ylabel=f"dev {metrics['metric']} (report half)",
        title=f"Flexible BERT on {metrics['task']}",
    )
    axis.legend(fontsize=7, loc="lower right")
    save_figure(figure, path)


def write_skipped(reason: str, flex_dir: Path, points_csv: Path, plot_png: Path) -> dict[str, str]:
    """The outputs DVC expects from the flex stage when it does not apply (a QA task): each says why."""
    with atomic_directory(flex_dir) as staging:
        (staging / "SKIPPED").write_text(reason + "\n", encoding="utf-8")
    write_points([], points_csv)
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 2))
    axis.axis("off")
    axis.text(0.5, 0.5, f"Flexible BERT skipped: {reason}", ha="center", va="center", wrap=True)
    save_figure(figure, plot_png)
    return {"skipped": reason}
