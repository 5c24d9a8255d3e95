"""Does Inductor's C++ wrapper remove the per-call cost of the compiled INT8 models at online shapes?
(`python -m studies.compile_wrapper`, after `dvc repro quantize`.) The dense and the ToP INT8 model, each compiled
with Inductor's default Python wrapper and with its C++ wrapper (`cpp_wrapper`), are timed side by side at batch 1
and 8 on real dev lengths and padded, in the benchmark's interleaved rounds. Writes
`artifacts/metrics/experiments/compile-wrapper.json`.

The profile (`studies.call_overhead`) puts a quarter of a batch-1 call of the compiled ToP INT8 model in the
compiled graphs' own glue; the C++ wrapper replaces the Python code that calls each graph's kernels, so this is
what it can win.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipeline import INT8_DIR, PREPARED_DIR, TEACHER_DIR, run_stage
from studies.experiment_file import write_experiment
from top.backbone import load_tokenizer
from top.bench import INPUT_KINDS, Timing, Variant, nested_latency, run_benchmark
from top.data.prepare import load_prepared
from top.params import Params
from top.quantize import load_int8

BATCH_SIZES = [1, 8]
# The model's two builds: Inductor's default (a Python wrapper calls the kernels) and its C++ wrapper.
WRAPPERS = {"compiled": False, "compiled-cpp-wrapper": True}


def compiled_int8(model_dir: Path, cpp_wrapper: bool) -> Callable[[dict[str, torch.Tensor]], Any]:
    """A call of the INT8 model in ``model_dir`` with its blocks compiled by the chosen wrapper; each call runs
    under that wrapper setting, so the blocks compiled on first use (and on any recompilation) get it."""
    model = load_int8(model_dir)
    model.compile_blocks()

    @torch.no_grad()
    def run(batch: dict[str, torch.Tensor]) -> Any:
        with torch._inductor.config.patch(cpp_wrapper=cpp_wrapper):
            return model(**batch)

    return run


def main(params: Params) -> None:
    bench = params.benchmark
    torch.set_num_threads(bench.threads)
    spec, splits, meta = load_prepared(PREPARED_DIR)
    examples = splits["eval"].shuffle(seed=bench.seed).select(range(min(bench.examples, len(splits["eval"]))))
    variants = [
        Variant(family, "int8", runtime, compiled_int8(Path(INT8_DIR) / name, cpp_wrapper))
        for family, name in (("dense", "teacher"), ("top", "top"))
        for runtime, cpp_wrapper in WRAPPERS.items()
    ]
    rows = run_benchmark(
        variants, examples, load_tokenizer(TEACHER_DIR), BATCH_SIZES, meta["max_length"], Timing.of(bench)
    )
    latency = nested_latency(rows)
    wrapper_speedup = {
        f"{family}/{kind}/batch_{size}": round(
            latency[f"{family}-int8-compiled"][kind][f"batch_{size}"]["median_ms"]
            / latency[f"{family}-int8-compiled-cpp-wrapper"][kind][f"batch_{size}"]["median_ms"],
            3,
        )
        for family in ("dense", "top")
        for kind in INPUT_KINDS
        for size in BATCH_SIZES
    }
    write_experiment(
        "compile-wrapper",
        __doc__,
        bench.threads,
        {
            "task": spec.name,
            "settings": {"batch_sizes": BATCH_SIZES, **bench.model_dump(include={"warmup", "repetitions", "rounds"})},
            "cpp_wrapper_speedup": wrapper_speedup,
            "latency": latency,
        },
    )


if __name__ == "__main__":
    run_stage("compile_wrapper", main)
