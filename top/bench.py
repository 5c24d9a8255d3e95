"""CPU latency and throughput of the pipeline's models, measured the same way for every one of them.

Inputs are real dev examples, batched two ways: dynamic padding (pad to the longest example in the batch,
what a server does) and padded to the task's max length (the papers' convention). Every model sees the same
batches in the same order; each (model, inputs, batch size) gets untimed warm-up calls, then timed calls in
rounds that interleave the models (so a slow spell of the machine hits all of them alike). We report the median
and p90 latency over all timed calls, each round's median, and the spread of the per-round speed-ups.
Speed-ups are against the fastest dense FP32 variant at the same inputs and batch size, so compiling the
baseline cannot flatter the pruned models, and also against the fastest dense variant of any precision and
runtime (INT8, ONNX Runtime, OpenVINO): what a user who does not prune would deploy instead.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import logging
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from top.cpu import cpu_description, int8_weights_saturate
from top.data.batches import MODEL_INPUTS
from top.params import BenchmarkParams

log = logging.getLogger(__name__)

INPUT_KINDS = ("dynamic", "padded")
# Each baseline's speed-up and its lowest and highest per-round value, keyed by its prefix.
SPEEDUP_BASELINES = {
    "speedup_vs_best_dense_fp32": ("speedup_min_over_rounds", "speedup_max_over_rounds"),
    "speedup_vs_fastest_dense": (
        "speedup_vs_fastest_dense_min_over_rounds",
        "speedup_vs_fastest_dense_max_over_rounds",
    ),
}
SPEEDUP_KEYS = tuple(key for name, (low, high) in SPEEDUP_BASELINES.items() for key in (name, low, high))


@dataclass(frozen=True)
class Variant:
    """One model as benchmarked: its family (dense/top), precision and runtime, and how to call it."""

    family: str
    precision: str
    runtime: str
    run: Callable[[dict[str, torch.Tensor]], Any]

    @property
    def name(self) -> str:
        return f"{self.family}-{self.precision}-{self.runtime}"


def benchmark_batches(
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    kind: str,
    max_length: int,
    count: int,
) -> list[dict[str, torch.Tensor]]:
    """``count`` batches cycling through ``split`` (already the drawn examples), padded as ``kind`` says."""
    if kind not in INPUT_KINDS:
        raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {kind!r}")
    columns = [name for name in MODEL_INPUTS if name in split.column_names]
    rows = split.select_columns(columns)
    batches = []
    for index in range(count):
        positions = [(index * batch_size + offset) % len(rows) for offset in range(batch_size)]
        features = [rows[position] for position in positions]
        padding = "max_length" if kind == "padded" else "longest"
        batches.append(tokenizer.pad(features, padding=padding, max_length=max_length, return_tensors="pt"))
    return batches


@dataclass(frozen=True)
class Timing:
    """How calls are timed: untimed warm-ups, then ``repetitions`` timed calls spread over ``rounds`` rounds.

    In each round every variant takes its turn at every case, so a slow spell of a noisy (shared) machine falls
    on all the models compared at that case rather than on whichever one happened to be timed then.
    """

    warmup: int
    repetitions: int
    rounds: int = 1

    @classmethod
    def of(cls, params: BenchmarkParams) -> Timing:
        return cls(params.warmup, params.repetitions, params.rounds)

    def __post_init__(self) -> None:
        if self.warmup < 0 or not 1 <= self.rounds <= self.repetitions:
            raise ValueError(
                "timing needs warmup >= 0 and 1 <= rounds <= repetitions, got "
                f"warmup={self.warmup}, repetitions={self.repetitions}, rounds={self.rounds}"
            )

    def round_calls(self) -> list[range]:
        """Indices (among the timed calls) of each round's calls: as even a split as the counts allow."""
        bounds = [index * self.repetitions // self.rounds for index in range(self.rounds + 1)]
        return [range(low, high) for low, high in itertools.pairwise(bounds)]


def latency_summary(seconds: list[list[float]], batch_size: int) -> dict[str, Any]:
    """Median and p90 over every timed call (``seconds`` holds one list per round), and each round's median."""
    pooled = [value for timed in seconds for value in timed]
    median = statistics.median(pooled)
    return {
        "median_ms": round(1000 * median, 3),
        "p90_ms": round(1000 * float(np.percentile(pooled, 90)), 3),
        "examples_per_second": round(batch_size / median, 2),
        "round_medians_ms": [round(1000 * statistics.median(timed), 3) for timed in seconds],
    }


@torch.no_grad()
def run_benchmark(
    variants: list[Variant],
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_sizes: list[int],
    max_length: int,
    timing: Timing,
    clock: Callable[[], float] = time.perf_counter,
) -> list[dict[str, Any]]:
    """One row per (variant, input kind, batch size), with speed-ups against the best dense FP32 row.

    Every variant runs the same batches in the same order. Warm-ups come first, for every variant and case;
    then each round times every case for every variant in turn, the variants' order rotating between rounds.
    """
    cases = [(kind, size) for kind in INPUT_KINDS for size in batch_sizes]
    count = timing.warmup + timing.repetitions
    inputs = {case: benchmark_batches(split, tokenizer, case[1], case[0], max_length, count) for case in cases}
    progress = tqdm(total=len(variants) * len(cases) * (1 + timing.rounds), desc="benchmark")
    for variant in variants:
        for case in cases:
            for batch in inputs[case][: timing.warmup]:
                variant.run(batch)
            progress.update(1)
    seconds: dict[tuple[str, tuple[str, int]], list[list[float]]] = {}
    for round_index, calls in enumerate(timing.round_calls()):
        shift = round_index % len(variants)
        for case in cases:
            for variant in variants[shift:] + variants[:shift]:
                timed = []
                for call in calls:
                    started = clock()
                    variant.run(inputs[case][timing.warmup + call])
                    timed.append(clock() - started)
                seconds.setdefault((variant.name, case), []).append(timed)
                progress.update(1)
    progress.close()
    rows = [
        {
            "model": variant.name,
            "family": variant.family,
            "precision": variant.precision,
            "runtime": variant.runtime,
            "inputs": kind,
            "batch_size": size,
            **latency_summary(seconds[(variant.name, (kind, size))], size),
        }
        for variant in variants
        for kind, size in cases
    ]
    add_speedups(rows)
    return rows


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """Speed-ups at the same inputs and batch size: best dense FP32 median / this row's median, and fastest dense
    median of any precision and runtime / this row's median.

    Beside each, the lowest and highest per-round speed-up (each round's fastest baseline median over this row's
    median in the same round): how far the conditions of one round could have moved the figure.
    """
    baselines: dict[str, Callable[[dict[str, Any]], bool]] = {
        "speedup_vs_best_dense_fp32": lambda row: row["family"] == "dense" and row["precision"] == "fp32",
        "speedup_vs_fastest_dense": lambda row: row["family"] == "dense",
    }
    for key, chosen in baselines.items():
        low, high = SPEEDUP_BASELINES[key]
        dense: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in rows:
            if chosen(row):
                dense.setdefault((row["inputs"], row["batch_size"]), []).append(row)
        for row in rows:
            bases = dense.get((row["inputs"], row["batch_size"]))
            if not bases:
                row |= dict.fromkeys((key, low, high))
                continue
            row[key] = round(min(base["median_ms"] for base in bases) / row["median_ms"], 3)
            per_round = [
                min(medians[:-1]) / medians[-1]
                for medians in zip(*(base["round_medians_ms"] for base in bases), row["round_medians_ms"], strict=True)
            ]
            row[low] = round(min(per_round), 3)
            row[high] = round(max(per_round), 3)


def speedup_summary(
    rows: list[dict[str, Any]], macs_ratios: dict[str, dict[str, float]], hugging_face_runtime: str | None = None
) -> dict[str, Any]:
    """The compressed models' speed-ups next to their MACs reductions (the acceptance figures), at batch 1 and at
    the largest batch, keyed ``<model>/<inputs>/batch_<n>``.

    ``macs_ratios`` maps each compressed family to its MACs ratio per input kind; rows of other families or kinds
    are left out. Each entry names the dense variant (any precision and runtime) that was fastest there, and
    gives the speed-up against dense FP32 in the row's own runtime (how much of the MACs cut one runtime turns into
    time) and, where the rows hold one, against the Hugging Face model (``hugging_face_runtime``).
    """
    largest = max(row["batch_size"] for row in rows)
    summary: dict[str, Any] = {}
    for kind, size in itertools.product(INPUT_KINDS, sorted({1, largest})):
        case = [row for row in rows if row["inputs"] == kind and row["batch_size"] == size]
        dense = [row for row in case if row["family"] == "dense"]
        fastest = min(dense, key=lambda row: row["median_ms"])["model"] if dense else None
        same_runtime = {row["runtime"]: row["median_ms"] for row in dense if row["precision"] == "fp32"}
        for row in case:
            ratio = macs_ratios.get(row["family"], {}).get(kind)
            if ratio is None:
                continue
            entry = summary[f"{row['model']}/{kind}/batch_{size}"] = {
                **{key: row[key] for key in SPEEDUP_KEYS},
                "fastest_dense": fastest,
                "macs_reduction": round(1 / ratio, 3),
                "speedup_over_macs_reduction": round(row["speedup_vs_best_dense_fp32"] * ratio, 3),
            }
            if hugging_face_runtime in same_runtime:
                entry["speedup_vs_hugging_face_fp32"] = round(same_runtime[hugging_face_runtime] / row["median_ms"], 3)
            if row["runtime"] in same_runtime:
                own = same_runtime[row["runtime"]] / row["median_ms"]
                entry["speedup_vs_dense_fp32_same_runtime"] = round(own, 3)
                entry["same_runtime_speedup_over_macs_reduction"] = round(own * ratio, 3)
    return summary


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, the ISA flags that matter for INT8/BF16, versions."""
    return cpu_description(threads) | {
        "int8_weights_7bit": int8_weights_saturate(),
        "torch": torch.__version__,
        "neural_compressor": _version("neural-compressor-pt"),
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def nested_latency(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """model -> inputs -> batch_<n> -> numbers: the shape `dvc metrics diff` can compare key by key."""
    nested: dict[str, Any] = {}
    for row in rows:
        cell = nested.setdefault(row["model"], {}).setdefault(row["inputs"], {})
        cell[f"batch_{row['batch_size']}"] = {
            key: row[key] for key in ("median_ms", "p90_ms", "examples_per_second", "round_medians_ms", *SPEEDUP_KEYS)
        }
    return nested
