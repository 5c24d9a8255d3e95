"""CPU latency and throughput of the pipeline's models, measured the same way for every one of them.

Inputs are real dev examples, batched two ways: dynamic padding (pad to the longest example in the batch,
what a server does) and padded to the task's max length (the papers' convention). Every model sees the same
batches in the same order; each (model, inputs, batch size) gets untimed warm-up calls, then timed calls, and we
report the median and p90 latency. Speed-ups are against the fastest dense FP32 variant at the same inputs
and batch size, so compiling the baseline cannot flatter the pruned models.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
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

from top.data.batches import MODEL_INPUTS

log = logging.getLogger(__name__)

INPUT_KINDS = ("dynamic", "padded")
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


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


@torch.no_grad()
def time_calls(
    run: Callable[[dict[str, torch.Tensor]], Any], batches: list[dict[str, torch.Tensor]], warmup: int, repetitions: int
) -> list[float]:
    """Seconds per call: ``warmup`` untimed calls, then ``repetitions`` timed ones, cycling through ``batches``."""
    for index in range(warmup):
        run(batches[index % len(batches)])
    seconds = []
    for index in range(repetitions):
        batch = batches[(warmup + index) % len(batches)]
        started = time.perf_counter()
        run(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def latency_summary(seconds: list[float], batch_size: int) -> dict[str, float]:
    median = statistics.median(seconds)
    return {
        "median_ms": round(1000 * median, 3),
        "p90_ms": round(1000 * float(np.percentile(seconds, 90)), 3),
        "examples_per_second": round(batch_size / median, 2),
    }


def run_benchmark(
    variants: list[Variant],
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_sizes: list[int],
    max_length: int,
    warmup: int,
    repetitions: int,
) -> list[dict[str, Any]]:
    """One row per (variant, input kind, batch size), with speed-up against the best dense FP32 row."""
    cases = [(kind, size) for kind in INPUT_KINDS for size in batch_sizes]
    inputs = {
        case: benchmark_batches(split, tokenizer, case[1], case[0], max_length, warmup + repetitions) for case in cases
    }
    rows = []
    progress = tqdm(total=len(variants) * len(cases), desc="benchmark")
    for variant in variants:
        for kind, size in cases:
            seconds = time_calls(variant.run, inputs[(kind, size)], warmup, repetitions)
            rows.append(
                {
                    "model": variant.name,
                    "family": variant.family,
                    "precision": variant.precision,
                    "runtime": variant.runtime,
                    "inputs": kind,
                    "batch_size": size,
                    **latency_summary(seconds, size),
                }
            )
            progress.update(1)
    progress.close()
    add_speedups(rows)
    return rows


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """speedup = best dense FP32 median / this row's median, at the same inputs and batch size."""
    best: dict[tuple[str, int], float] = {}
    for row in rows:
        if row["family"] == "dense" and row["precision"] == "fp32":
            key = (row["inputs"], row["batch_size"])
            best[key] = min(best.get(key, float("inf")), row["median_ms"])
    for row in rows:
        baseline = best.get((row["inputs"], row["batch_size"]))
        row["speedup_vs_best_dense_fp32"] = round(baseline / row["median_ms"], 3) if baseline else None


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, the ISA flags that matter for INT8/BF16, versions."""
    flags: set[str] = set()
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "isa_flags": sorted(flag for flag in ISA_FLAGS if flag in flags),
        "threads": threads,
        "torch": torch.__version__,
        "neural_compressor": _version("neural-compressor-pt"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
