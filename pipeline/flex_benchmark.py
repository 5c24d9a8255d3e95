"""Stage `flex_benchmark`: CPU latency of the flexible models beside the dense teacher, timed as `benchmark` times.

Variants: the dense teacher (eager, compiled when the benchmark params say so, and in the FP32 runtimes of
``benchmark.peers``: the fastest dense model a user could deploy instead), the best dynamic trade-off (gates
route each example, off-ramps exit early; batches are split by route as in ``top.flex.dynamic``), and the static
subnet whose MACs are closest to it. Same inputs, batch sizes, threads, warm-up and repetitions as the `benchmark`
stage, so the speed-ups read the same way as ToP's; the summary sets each flexible model's speed-up over the dense
teacher in its own runtime (eager) against its MACs reduction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline import CHECKPOINT_ROOT, FLEX_DIR, PREPARED_DIR, TEACHER_DIR, metrics_path, read_stage_metrics, run_stage
from top.atomic import write_json
from top.backbone import check_bert_dir, load_float32, load_tokenizer
from top.bench import Timing, Variant, machine_info, nested_latency, run_benchmark, speedup_summary
from top.data.prepare import load_prepared
from top.flex.dynamic import dynamic_forward
from top.flex.supernet import FlexibleBertForSequenceClassification
from top.flex.sweep import DevSplit
from top.params import BenchmarkParams, FlexParams, Params
from top.peers import build_peers, evaluate_peer, peer_parts
from top.pruning.model import TokenPruningBertForSequenceClassification
from top.quantize import compiled_fp32


def closest_static(grid: list[dict[str, Any]], macs_ratio: float) -> dict[str, Any]:
    return min(grid, key=lambda row: abs(row["macs_ratio"] - macs_ratio))


def benchmark_flex(
    prepared_dir: str | Path,
    teacher_dir: Path,
    flex_dir: Path,
    measured: dict[str, Any],
    params: BenchmarkParams,
    flex_params: FlexParams,
    output_json: Path,
    peer_dir: Path,
) -> dict[str, Any]:
    """Time the variants and write ``output_json``; the peers' ONNX files go to ``peer_dir``, rebuilt each run."""
    torch.set_num_threads(params.threads)
    check_bert_dir(teacher_dir)
    check_bert_dir(flex_dir)
    spec, splits, meta = load_prepared(prepared_dir)
    best = measured["best_tradeoff"]
    static = closest_static(measured["grids"][measured["main_supernet"]], best["report_macs_ratio"])
    examples = splits["eval"].shuffle(seed=params.seed).select(range(min(params.examples, len(splits["eval"]))))
    tokenizer = load_tokenizer(str(teacher_dir))
    dense = load_float32(TokenPruningBertForSequenceClassification, teacher_dir).eval()
    flexible = load_float32(FlexibleBertForSequenceClassification, flex_dir).eval()

    def route(batch: dict[str, torch.Tensor]) -> Any:
        return dynamic_forward(
            flexible,
            batch["input_ids"],
            batch["attention_mask"],
            batch.get("token_type_ids"),
            best["map"],
            best["threshold"],
        )

    variants = [Variant("dense", "fp32", "eager", lambda batch: dense(**batch))]
    if params.compile:
        compiled = compiled_fp32(dense)
        variants.append(Variant("dense", "fp32", "compiled", lambda batch: compiled(**batch)))
    dev_split = DevSplit.build(splits["eval"], flex_params.select_share, flex_params.seed)
    report_half = splits["eval"].select(dev_split.report)
    peer_scores = {}
    fp32_peers = [name for name in params.peers if peer_parts(name)[0] == "fp32"]
    for name, peer in build_peers(fp32_peers, teacher_dir, peer_dir, params.threads, list).items():
        variant = Variant("dense", *peer_parts(name), lambda batch, m=peer: m(**batch))
        variants.append(variant)
        metrics, _ = evaluate_peer(peer, spec, report_half, tokenizer, flex_params.eval_batch_size)
        peer_scores[variant.name] = round(metrics[spec.primary_metric], 4)
    variants += [
        Variant("flex-dynamic", "fp32", "eager", route),
        Variant(
            "flex-static",
            "fp32",
            "eager",
            lambda batch: flexible(**batch, width=static["width"], depth=static["depth"]),
        ),
    ]
    dev = {
        "dense": measured["teacher"]["report"],
        "flex-dynamic": best["report_score"],
        "flex-static": static["report_score"],
    }
    rows = run_benchmark(variants, examples, tokenizer, params.batch_sizes, meta["max_length"], Timing.of(params))
    for row in rows:
        row["dev_metric_report_half"] = peer_scores.get(row["model"], dev[row["family"]])
    result = {
        "task": spec.name,
        "metric": spec.primary_metric,
        "machine": machine_info(params.threads),
        "dynamic": {"map": best["map"], "threshold": best["threshold"], "macs_ratio": best["report_macs_ratio"]},
        "static": {"width": static["width"], "depth": static["depth"], "macs_ratio": static["macs_ratio"]},
        "dev_metric_report_half": dev | peer_scores,
        "latency": nested_latency(rows),
        "summary": speedup_summary(
            rows,
            {"flex-dynamic": {"dynamic": best["report_macs_ratio"]}, "flex-static": {"dynamic": static["macs_ratio"]}},
        ),
    }
    write_json(output_json, result)
    return result


def main(params: Params) -> None:
    flex = read_stage_metrics("flex")
    if "skipped" in flex:
        write_json(metrics_path("flex_benchmark"), flex)
        return
    output = metrics_path("flex_benchmark")
    peer_dir = Path(CHECKPOINT_ROOT) / "flex-peers"
    peer_dir.mkdir(parents=True, exist_ok=True)
    benchmark_flex(
        PREPARED_DIR, Path(TEACHER_DIR), Path(FLEX_DIR), flex, params.benchmark, params.flex, output, peer_dir
    )


if __name__ == "__main__":
    run_stage("flex_benchmark", main)
