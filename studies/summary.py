"""The short table `make repro` prints at the end: what the pipeline produced, how good and how fast it is.

`python -m studies.summary` reads the current stage metrics (artifacts/metrics/*.json) of the checkout it runs in,
so a user sees the outcome of the run without opening JSON files: the dev metric of each model, its encoder MACs
against the dense teacher, and its speed-up over the fastest dense FP32 model and over the fastest dense model of
any precision and runtime (ONNX Runtime and OpenVINO peers included) at batch 1 and the largest batch (real-length
inputs), then where the models are.
"""

from __future__ import annotations

import sys
from typing import Any

from pipeline import FLEX_DIR, INT8_DIR, PRUNED_DIR, TEACHER_DIR, read_stage_metrics
from top.errors import TopError

INPUTS = "dynamic"  # real lengths, dynamic padding: the shapes users send


def model_rows(prune: dict[str, Any], quantize: dict[str, Any], benchmark: dict[str, Any]) -> list[list[str]]:
    """One row per benchmarked model: name, dev metric, MACs ratio, and at the smallest and largest batch the
    speed-up over the fastest dense FP32 model and over the fastest dense model of any runtime."""
    metric = benchmark["metric"]
    scores = {"dense-fp32": prune["teacher"][metric], "top-fp32": prune[metric]}
    if quantize.get("enabled"):
        scores |= {
            f"{family}-int8": quantize[name]["int8"][metric] for family, name in (("dense", "teacher"), ("top", "top"))
        }
    measured = benchmark.get("dev_metric", {})  # every model's, the peers' included (older runs: none)
    macs = {"dense": 1.0, "top": prune["macs_ratio_real_lengths"]}
    rows = []
    for model, by_inputs in benchmark["latency"].items():
        family, precision = model.split("-")[:2]  # <family>-<precision>-<runtime...>
        cells = by_inputs[INPUTS]
        batches = sorted(cells, key=lambda key: int(key.removeprefix("batch_")))
        speedups = [
            cells[batch].get(key)
            for key in ("speedup_vs_best_dense_fp32", "speedup_vs_fastest_dense")
            for batch in (batches[0], batches[-1])
        ]
        rows.append(
            [
                model,
                f"{measured.get(model, scores.get(f'{family}-{precision}')):.4f}",
                f"{macs[family]:.3f}",
                *("-" if speedup is None else f"{speedup:.2f}x" for speedup in speedups),
            ]
        )
    return rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Plain aligned columns: the first left-aligned, the rest right-aligned."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def summary() -> str:
    """The whole printout, from the stage metrics on disk."""
    prune, quantize, benchmark = (read_stage_metrics(stage) for stage in ("prune", "quantize", "benchmark"))
    batches = sorted(
        {int(key.removeprefix("batch_")) for cells in benchmark["latency"].values() for key in cells[INPUTS]}
    )
    ends = (batches[0], batches[-1])
    header = [
        "model",
        f"dev {benchmark['metric']}",
        "MACs",
        *(f"vs FP32 b{size}" for size in ends),
        *(f"vs any b{size}" for size in ends),
    ]
    lines = [
        f"{benchmark['task']}: ToP at prune.target_macs {prune['target_macs']} (speed-ups over the fastest dense "
        "FP32 model, and over the fastest dense model of any precision and runtime; real-length inputs)",
        "",
        format_table(header, model_rows(prune, quantize, benchmark)),
        "",
        f"models: teacher {TEACHER_DIR}, ToP {PRUNED_DIR}, INT8 {INT8_DIR}/{{teacher,top}}"
        + (f", Flexible BERT {FLEX_DIR}" if "skipped" not in _flex() else ""),
        "details: artifacts/metrics/*.json, docs/RESULTS.md",
    ]
    return "\n".join(lines)


def _flex() -> dict[str, Any]:
    try:
        return read_stage_metrics("flex")
    except TopError:
        return {"skipped": "not run"}


def main() -> None:
    try:
        print(summary())
    except TopError as exc:
        print(f"error: summary: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
