"""Profile: where the time of one call goes at the shapes of online requests (`python -m studies.call_overhead
[--root WORKSPACE]`, after `dvc repro prune quantize` there), for the dense FP32 model, the ToP FP32 model (both
eager) and the ToP INT8 model (compiled, as the benchmark runs it; only where the quantize stage made one), at
batch 1 and 8 on real dev examples (dynamic padding).

Each call's wall time is split with torch.profiler into kernel time (the self time of the operators and
Inductor kernels that compute), framework operator time (the self time of views, reshapes, allocations and
composite operators that only dispatch to others), compiled-graph glue (Dynamo guards and the compiled wrappers'
own time) and the rest, spent outside any operator: Python and the dispatch between operators. The same is
measured at the benchmark's thread count and at 1 thread: the kernel time that 2 threads spend beyond half the
1-thread kernel time is what the split costs (synchronisation, imbalance, shared memory bandwidth). Writes
`artifacts/metrics/experiments/call-overhead-<task>.json`.

Timings under the profiler are inflated by its own cost per recorded event; the unprofiled wall time is given
next to them. Inductor's C++ kernels are recorded only with its kernel profiling on, which this study turns on
(and the FX graph cache off, so that every thread count gets its own compiled kernels).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from pipeline import INT8_DIR, PREPARED_DIR, PRUNED_DIR, TEACHER_DIR, run_stage
from studies.experiment_file import write_experiment
from top.backbone import load_tokenizer
from top.bench import benchmark_batches
from top.data.prepare import load_prepared
from top.params import Params
from top.pruning.model import pruning_model_class
from top.quantize import load_int8

BATCH_SIZES = (1, 8)
WARMUP = 5
CALLS = 40
TOP_OPERATORS = 8
# Operators whose own time is framework work, not arithmetic: views and shape changes, allocation, and composite
# operators whose arithmetic runs in the operators they call (their children carry it).
FRAMEWORK_OPERATORS = frozenset(
    f"aten::{name}"
    for name in [
        "view",
        "view_as",
        "reshape",
        "_reshape_alias",
        "_unsafe_view",
        "flatten",
        "unflatten",
        "transpose",
        "t",
        "permute",
        "expand",
        "expand_as",
        "slice",
        "select",
        "as_strided",
        "unsqueeze",
        "squeeze",
        "narrow",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "detach",
        "alias",
        "contiguous",
        "linear",
        "matmul",
        "scaled_dot_product_attention",
        "layer_norm",
        "softmax",
        "dropout",
        "to",
        "type_as",
        "empty",
        "empty_like",
        "empty_strided",
        "resolve_conj",
        "resolve_neg",
        "lift_fresh",
        "result_type",
        "size",
        "stride",
        "item",
        "_local_scalar_dense",
    ]
)
# Events of torch.compile's own machinery: their self time is guards and wrapper code around the compiled kernels.
GLUE_PREFIXES = (
    "Torch-Compiled Region",
    "TorchDynamo",
    "## ",  # the compiled graph's Python wrapper: "## Call CompiledFxGraph ... ##"
    "CompiledFunction",
    "Pregraph bytecode",
    "AOTDispatcher",
    "Lazy Compilation",
)


def event_kind(name: str) -> str:
    """``kernel``, ``framework`` (operators that only shape or dispatch) or ``compiled_glue`` for an event name."""
    if name.startswith(GLUE_PREFIXES):
        return "compiled_glue"
    if name in FRAMEWORK_OPERATORS:
        return "framework"
    return "kernel"


@torch.no_grad()
def profile_calls(model: Callable[..., Any], batches: list[dict[str, torch.Tensor]], warmup: int) -> dict[str, Any]:
    """Per call (ms): unprofiled median wall time, then the profiled calls' wall time split by ``event_kind``,
    the rest (outside every event) being Python and dispatch; the operators with the most kernel time."""
    for batch in batches[:warmup]:
        model(**batch)
    timed = batches[warmup:]
    calls = len(timed)
    walls = []
    for batch in timed:
        started = time.perf_counter()
        model(**batch)
        walls.append(time.perf_counter() - started)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        for batch in timed:
            model(**batch)
        profiled = time.perf_counter() - started
    self_us: dict[str, float] = defaultdict(float)
    kernels: dict[str, float] = defaultdict(float)
    events = 0
    for average in profiler.key_averages():
        kind = event_kind(average.key)
        self_us[kind] += average.self_cpu_time_total
        events += average.count
        if kind == "kernel":
            kernels[average.key] += average.self_cpu_time_total
    per_call = {kind: self_us[kind] / 1000 / calls for kind in ("kernel", "framework", "compiled_glue")}
    profiled_ms = 1000 * profiled / calls
    return {
        "wall_ms": round(1000 * statistics.median(walls), 3),
        "profiled_wall_ms": round(profiled_ms, 3),
        "kernel_ms": round(per_call["kernel"], 3),
        "framework_operator_ms": round(per_call["framework"], 3),
        "compiled_glue_ms": round(per_call["compiled_glue"], 3),
        "python_and_dispatch_ms": round(profiled_ms - sum(per_call.values()), 3),
        "events_per_call": round(events / calls, 1),
        "top_kernels_ms": {
            name: round(us / 1000 / calls, 3)
            for name, us in sorted(kernels.items(), key=lambda item: -item[1])[:TOP_OPERATORS]
        },
    }


def thread_split(many: dict[str, Any], one: dict[str, Any], threads: int) -> dict[str, float]:
    """What running on ``threads`` threads instead of 1 bought, and the kernel time lost to splitting the work."""
    return {
        "wall_speedup": round(one["wall_ms"] / many["wall_ms"], 3),
        "kernel_speedup": round(one["kernel_ms"] / many["kernel_ms"], 3) if many["kernel_ms"] else None,
        "kernel_ms_beyond_even_split": round(many["kernel_ms"] - one["kernel_ms"] / threads, 3),
    }


def profile_models(
    builders: dict[str, Callable[[], Callable[..., Any]]],
    batches: dict[int, list[dict[str, torch.Tensor]]],
    threads: int,
    warmup: int,
) -> dict[str, Any]:
    """model -> batch_<n> -> threads_<t> -> ``profile_calls``, at ``threads`` and at 1 thread, plus the split.

    Every model is built afresh for each thread count (compiled kernels fix their thread count when compiled).
    """
    counts = sorted({threads, 1}, reverse=True)
    results: dict[str, Any] = {name: {f"batch_{size}": {} for size in batches} for name in builders}
    previous = torch.get_num_threads()
    try:
        for count in counts:
            torch.set_num_threads(count)
            torch._dynamo.reset()
            for name, build in builders.items():
                model = build()
                for size, sized in batches.items():
                    results[name][f"batch_{size}"][f"threads_{count}"] = profile_calls(model, sized, warmup)
    finally:
        torch.set_num_threads(previous)
    if threads > 1:
        for cells in results.values():
            for cell in cells.values():
                cell["thread_split"] = thread_split(cell[f"threads_{threads}"], cell["threads_1"], threads)
    return results


def shares(results: dict[str, Any], threads: int) -> dict[str, Any]:
    """At ``threads`` threads: each part's share of the profiled wall time, per model and batch."""
    parts = ("kernel_ms", "framework_operator_ms", "compiled_glue_ms", "python_and_dispatch_ms")
    summary = {}
    for name, cells in results.items():
        for batch, cell in cells.items():
            measured = cell[f"threads_{threads}"]
            summary[f"{name}/{batch}"] = {
                "wall_ms": measured["wall_ms"],
                **{part.removesuffix("_ms"): round(measured[part] / measured["profiled_wall_ms"], 3) for part in parts},
            }
    return summary


def _eager(model_dir: str | Path) -> Callable[[], Any]:
    return lambda: pruning_model_class(model_dir).from_pretrained(str(model_dir)).eval()


def _int8_compiled(model_dir: Path) -> Callable[[], Any]:
    def build() -> Any:
        model = load_int8(model_dir)
        model.compile_blocks()
        return model

    return build


def model_builders(root: Path) -> dict[str, Callable[[], Any]]:
    """The models a workspace holds: the dense teacher and ToP in eager FP32, and ToP INT8 where quantize ran."""
    builders = {"dense-fp32-eager": _eager(root / TEACHER_DIR), "top-fp32-eager": _eager(root / PRUNED_DIR)}
    int8_top = root / INT8_DIR / "top"
    if int8_top.is_dir():
        builders["top-int8-compiled"] = _int8_compiled(int8_top)
    return builders


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the pipeline workspace whose models to profile")
    root = parser.parse_args().root
    torch._inductor.config.cpp.enable_kernel_profile = True
    torch._inductor.config.fx_graph_cache = False
    spec, splits, meta = load_prepared(root / PREPARED_DIR)
    examples = splits["eval"].shuffle(seed=params.benchmark.seed)
    examples = examples.select(range(min(params.benchmark.examples, len(examples))))
    tokenizer = load_tokenizer(str(root / TEACHER_DIR))
    batches = {
        size: benchmark_batches(examples, tokenizer, size, "dynamic", meta["max_length"], WARMUP + CALLS)
        for size in BATCH_SIZES
    }
    threads = params.benchmark.threads
    results = profile_models(model_builders(root), batches, threads, WARMUP)
    write_experiment(
        f"call-overhead-{spec.name}",
        __doc__,
        threads,
        {
            "task": spec.name,
            "workspace": str(root.resolve()),
            "settings": {"batch_sizes": list(BATCH_SIZES), "warmup": WARMUP, "calls": CALLS, "inputs": "dynamic"},
            "shares": shares(results, threads),
            "results": results,
        },
    )


if __name__ == "__main__":
    run_stage("call_overhead", main)
