"""The comparison a MACs sweep produces: one row per target, as CSV, Markdown and a plot."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from top.figures import pyplot, save_figure


def sweep_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dev metric, measured MACs ratios and latency (largest batch, padded inputs) of each run of a sweep."""
    rows = []
    for result in results:
        prune, benchmark, quantize = result["prune"], result["benchmark"], result["quantize"]
        metric = benchmark["metric"]
        largest = max(benchmark["settings"]["batch_sizes"])
        row: dict[str, Any] = {
            "experiment": result["name"],
            "target_macs": prune["target_macs"],
            "macs_ratio_real_lengths": prune["macs_ratio_real_lengths"],
            "macs_ratio_padded": prune["macs_ratio_padded_max_length"],
            f"teacher_{metric}": round(prune["teacher"][metric], 4),
            f"top_{metric}": round(prune[metric], 4),
            f"top_int8_{metric}": round(quantize["top"]["int8"][metric], 4) if quantize.get("enabled") else None,
        }
        for model, cells in benchmark["latency"].items():
            if model.startswith("top-"):
                cell = cells["padded"][f"batch_{largest}"]
                row[f"{model}_ms_batch{largest}"] = cell["median_ms"]
                row[f"{model}_speedup"] = cell["speedup_vs_best_dense_fp32"]
        rows.append(row)
    return rows


def write_sweep(rows: list[dict[str, Any]], directory: Path) -> str:
    """Write ``sweep.csv``, ``sweep.md`` and ``sweep.png`` under ``directory``; return the Markdown table."""
    directory.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with (directory / "sweep.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    markdown = "\n".join(
        [
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
            *("| " + " | ".join("" if row.get(c) is None else str(row.get(c)) for c in columns) + " |" for row in rows),
        ]
    )
    (directory / "sweep.md").write_text(markdown + "\n", encoding="utf-8")
    _plot(rows, columns, directory / "sweep.png")
    return markdown


def _plot(rows: list[dict[str, Any]], columns: list[str], path: Path) -> None:
    plt = pyplot()
    ordered = sorted(rows, key=lambda row: row["macs_ratio_real_lengths"])
    macs = [row["macs_ratio_real_lengths"] for row in ordered]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for column in columns:
        if column.startswith(("top_", "teacher_")):
            values = [row[column] for row in ordered]
            if all(value is not None for value in values):
                left.plot(macs, values, marker="o", label=column)
        if "_ms_batch" in column:
            right.plot(macs, [row[column] for row in ordered], marker="o", label=column)
    left.set(xlabel="MACs ratio (real lengths)", ylabel="dev metric", title="quality vs compute")
    right.set(xlabel="MACs ratio (real lengths)", ylabel="median latency (ms)", title="latency vs compute (padded)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    save_figure(figure, path)
