"""Stage `benchmark`: CPU latency of every model the pipeline produced (`--quick`: a seconds-long smoke run).

Variants: the dense teacher and the ToP model, each FP32 eager and, when the quantize stage ran, INT8 (the teacher
also as Hugging Face's own model class, eager FP32: the reference for the speed-ups users compare against); with
``compile`` on, FP32 also with its blocks under torch.compile, and INT8 compiled (INT8 is only fast compiled).
Dev metrics come from the stages that measured them (prune for FP32, quantize for INT8); a compiled FP32 model
computes the same function as its eager source. The peers (``benchmark.peers``: the dense teacher in ONNX Runtime
and OpenVINO, top.peers) and, with ``benchmark.top_ort``, the ToP model in ONNX Runtime (one graph, FP32 and
dynamic INT8, saved under artifacts/onnx/) are built here, timed in the same rounds and scored on the dev set
here, each INT8 one also for its agreement with FP32 in the same runtime.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification, PreTrainedTokenizerBase

from pipeline import (
    CHECKPOINT_ROOT,
    INT8_DIR,
    INT8_SOURCES,
    METRICS_DIR,
    ONNX_DIR,
    PREPARED_DIR,
    metrics_path,
    read_stage_metrics,
    run_stage,
)
from top.atomic import atomic_directory, atomic_file, write_json
from top.backbone import check_task_head, load_float32, load_tokenizer
from top.bench import Timing, Variant, machine_info, nested_latency, run_benchmark, speedup_summary
from top.data.prepare import load_prepared
from top.data.tasks import TaskSpec
from top.evaluate import agreement_record
from top.figures import pyplot, save_figure
from top.params import BenchmarkParams, Params, QuantizeParams
from top.peers import PEERS, build_peers, evaluate_peer, peer_parts
from top.pruning.model import pruning_model_class
from top.quantize import calibration_batches, compiled_fp32, load_int8, set_inductor_cache

log = logging.getLogger(__name__)

INDUCTOR_CACHE = f"{CHECKPOINT_ROOT}/inductor"
# The peers' ONNX and INT8 files: rebuilt by every run, outside the DVC outputs.
PEER_DIR = f"{CHECKPOINT_ROOT}/peers"
QA_PEER_SKIP = "a QA task: the peers are exported sequence classifiers, and no span head is exported"
INT8_PEER_SKIP = "quantize.enabled is false: no INT8 rows"
TOP_ORT_OFF = "benchmark.top_ort is false"
# The ToP model's ONNX Runtime builds (top.peers names: <runtime>-<precision>).
TOP_ORT = ("ort-fp32", "ort-int8")
# The quick mode of the tests: every field, in seconds (these params replaced; their values go in the JSON).
QUICK = {"batch_sizes": [1, 2], "examples": 4, "warmup": 1, "repetitions": 2, "rounds": 2, "compile": False}
# The teacher as Hugging Face's own model class, eager FP32: the reference a user starts from. Our dense model
# computes the same logits (tested) with its own code, so it is timed beside this one, not in its place.
HF_RUNTIME = "hf-eager"
HF_VARIANT = f"dense-fp32-{HF_RUNTIME}"
# Every variant the stage can build, in plot order (the latency CSV has a column for each).
ALL_VARIANTS = (
    HF_VARIANT,
    *(
        f"{family}-{precision}-{runtime}"
        for family in ("dense", "top")
        for precision in ("fp32", "int8")
        for runtime in ("eager", "compiled")
    ),
    *("dense-{}-{}".format(*peer_parts(peer)) for peer in PEERS),
)
ALL_VARIANTS += tuple("top-{}-{}".format(*peer_parts(name)) for name in TOP_ORT)


def benchmark_models(
    prepared_dir: str | Path,
    fp32_dirs: dict[str, Path],
    int8_root: Path,
    measured: dict[str, dict[str, Any]],
    params: BenchmarkParams,
    output_json: Path,
    latency_csv: Path,
    plot_png: Path,
    quick: bool = False,
    quantize: QuantizeParams | None = None,
    peer_dir: Path | None = None,
    onnx_dir: Path | None = None,
) -> dict[str, Any]:
    """Time every variant; write ``output_json`` (metrics), ``latency_csv`` (DVC plot data) and ``plot_png``.

    ``quantize`` gives the calibration draw and evaluation batch size of the INT8 peers (None: the library
    defaults); their files go under ``peer_dir``, and the ToP model's ONNX files under ``onnx_dir`` (None: a
    temporary directory).
    """
    params = params.model_copy(update=QUICK) if quick else params
    quantize = quantize or QuantizeParams()
    settings = {key: getattr(params, key) for key in QUICK}
    torch.set_num_threads(params.threads)
    spec, splits, meta = load_prepared(prepared_dir)
    quantized = measured["quantize"].get("enabled", False)
    examples = splits["eval"].shuffle(seed=params.seed).select(range(min(params.examples, len(splits["eval"]))))
    tokenizer = load_tokenizer(str(fp32_dirs["teacher"]))
    variants, dev_metric = [], {}
    for family, name in (("dense", "teacher"), ("top", "top")):
        check_task_head(fp32_dirs[name], spec)
        fp32 = load_float32(pruning_model_class(fp32_dirs[name]), fp32_dirs[name]).eval()
        fp32_metric = measured["prune"]["teacher"] if family == "dense" else measured["prune"]
        builds: list[tuple[str, str, Callable[[], Any], Any]] = [("fp32", "eager", lambda m=fp32: m, fp32_metric)]
        if family == "dense":
            hf_class = AutoModelForQuestionAnswering if spec.is_qa else AutoModelForSequenceClassification
            builds.insert(
                0, ("fp32", HF_RUNTIME, lambda c=hf_class, d=fp32_dirs[name]: load_float32(c, d).eval(), fp32_metric)
            )
        if params.compile:
            builds.append(("fp32", "compiled", lambda m=fp32: compiled_fp32(m), fp32_metric))
        if quantized:
            runtime = "compiled" if params.compile else "eager"
            int8_metric = measured["quantize"][name]["int8"]
            builds.append(("int8", runtime, lambda d=int8_root / name, r=runtime: _load_int8(d, r), int8_metric))
        for precision, runtime, build, metrics in builds:
            model = build()
            variant = Variant(family, precision, runtime, lambda batch, m=model: m(**batch))
            variants.append(variant)
            dev_metric[variant.name] = metrics[spec.primary_metric]
    with contextlib.ExitStack() as stack:
        work = peer_dir if peer_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        # Quick runs score the runtime models on the timed examples only, to stay seconds long.
        dev = examples if quick else splits["eval"]
        scoring = RuntimeScoring(params, spec, quantized, tokenizer, splits["train"], dev, quantize)
        peers = scoring.variants("dense", params.peers, fp32_dirs["teacher"], work)
        top_ort = _top_ort_variants(scoring, fp32_dirs["top"], onnx_dir)
        for variant, metric in peers["variants"] + top_ort["variants"]:
            variants.append(variant)
            dev_metric[variant.name] = metric
        rows = run_benchmark(
            variants,
            examples,
            tokenizer,
            params.batch_sizes,
            meta["max_length"],
            Timing.of(params),
        )
    for row in rows:
        row["dev_metric"] = dev_metric[row["model"]]
    result = {
        "task": spec.name,
        "metric": spec.primary_metric,
        "quick": quick,
        "settings": settings,
        "machine": machine_info(params.threads),
        "macs_ratio": {
            "dynamic": measured["prune"]["macs_ratio_real_lengths"],
            "padded": measured["prune"]["macs_ratio_padded_max_length"],
        },
        "dev_metric": dev_metric,
        "peers": peers["record"],
        "top_ort": top_ort["record"],
        "latency": nested_latency(rows),
        "summary": speedup_summary(
            rows,
            {
                "top": {
                    "dynamic": measured["prune"]["macs_ratio_real_lengths"],
                    "padded": measured["prune"]["macs_ratio_padded_max_length"],
                }
            },
            HF_RUNTIME,
        ),
    }
    write_json(output_json, result)
    _write_padded_latency(latency_csv, rows)
    plot_benchmark(rows, spec.primary_metric, plot_png)
    return result


@dataclass
class RuntimeScoring:
    """What building and scoring a model in another runtime needs: the task, its splits and the INT8 settings."""

    params: BenchmarkParams
    spec: TaskSpec
    quantized: bool
    tokenizer: PreTrainedTokenizerBase
    train: datasets.Dataset
    dev: datasets.Dataset
    quantize: QuantizeParams

    def variants(self, family: str, names: list[str], model_dir: Path, work: Path) -> dict[str, Any]:
        """``model_dir``'s model in each runtime of ``names`` (top.peers) as variants with their dev metric, and
        what benchmark.json says of each: its dev metrics, an INT8 one's agreement with FP32 in the same runtime,
        or why it is skipped."""
        if names and self.spec.is_qa:
            return {"variants": [], "record": {name: {"skipped": QA_PEER_SKIP} for name in names}}
        wanted = [name for name in names if self.quantized or not name.endswith("-int8")]
        record: dict[str, Any] = {name: {"skipped": INT8_PEER_SKIP} for name in names if name not in wanted}
        built = build_peers(
            wanted,
            model_dir,
            work,
            self.params.threads,
            lambda: calibration_batches(self.train, self.tokenizer, self.quantize),
            family=family,
        )
        variants, fp32_predictions = [], {}
        for name, model in built.items():
            precision, runtime = peer_parts(name)
            variant = Variant(family, precision, runtime, lambda batch, m=model: m(**batch))
            metrics, predictions = evaluate_peer(
                model, self.spec, self.dev, self.tokenizer, self.quantize.eval_batch_size
            )
            variants.append((variant, metrics[self.spec.primary_metric]))
            record[name] = {"model": variant.name, "dev": metrics, "dev_examples": len(self.dev)}
            if precision == "fp32":
                fp32_predictions[runtime] = predictions
            elif runtime in fp32_predictions:
                record[name]["vs_fp32"] = agreement_record(self.spec, fp32_predictions[runtime], predictions)
            log.info("%s: dev %s", variant.name, metrics)
        return {"variants": variants, "record": {name: record[name] for name in names}}


def _top_ort_variants(scoring: RuntimeScoring, top_dir: Path, onnx_dir: Path | None) -> dict[str, Any]:
    """The ToP model in ONNX Runtime, its files written atomically to ``onnx_dir`` (None: a temporary directory),
    or a note there saying why it was not built."""
    with contextlib.ExitStack() as stack:
        staging = (
            stack.enter_context(atomic_directory(onnx_dir))
            if onnx_dir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        if not scoring.params.top_ort:
            (staging / "SKIPPED").write_text(TOP_ORT_OFF + "\n", encoding="utf-8")
            return {"variants": [], "record": {"skipped": TOP_ORT_OFF}}
        built = scoring.variants("top", list(TOP_ORT), top_dir, staging)
        if scoring.spec.is_qa:
            (staging / "SKIPPED").write_text(QA_PEER_SKIP + "\n", encoding="utf-8")
        return built


def _load_int8(model_dir: Path, runtime: str) -> Any:
    model = load_int8(model_dir)
    if runtime == "compiled":
        model.compile_blocks()
    return model


def _write_padded_latency(path: Path, rows: list[dict[str, Any]]) -> None:
    """Padded-input median latency, one column per model variant (blank when not built), for `dvc plots`."""
    sizes = sorted({row["batch_size"] for row in rows})
    table = {(row["model"], row["batch_size"]): row["median_ms"] for row in rows if row["inputs"] == "padded"}
    with atomic_file(path) as staging, staging.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["batch_size", *ALL_VARIANTS])
        writer.writerows([size, *(table.get((name, size), "") for name in ALL_VARIANTS)] for size in sizes)


def plot_benchmark(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    """Latency vs batch size (padded inputs) and dev metric vs latency at the largest batch, one PNG."""
    plt = pyplot()
    models = list(dict.fromkeys(row["model"] for row in rows))
    largest = max(row["batch_size"] for row in rows)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in models:
        mine = [row for row in rows if row["model"] == model and row["inputs"] == "padded"]
        (line,) = left.plot(
            [row["batch_size"] for row in mine], [row["median_ms"] for row in mine], marker="o", label=model
        )
        at_largest = [row for row in rows if row["model"] == model and row["batch_size"] == largest]
        for row in at_largest:  # one colour per model in both panels; text labels would pile up on each other
            marker = "o" if row["inputs"] == "padded" else "^"
            right.scatter(row["median_ms"], row["dev_metric"], marker=marker, color=line.get_color())
    left.set(xscale="log", yscale="log", xlabel="batch size", ylabel="median latency (ms)", title="padded inputs")
    left.legend(fontsize=7)
    right.set(xscale="log", xlabel=f"median latency at batch {largest} (ms)", ylabel=f"dev {metric}")
    right.set_title("dev metric vs latency (colours as on the left; o padded, ^ dynamic)")
    save_figure(figure, path)


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for tests; still writes every field")
    quick = parser.parse_args(sys.argv[1:]).quick
    set_inductor_cache(INDUCTOR_CACHE)
    benchmark_models(
        PREPARED_DIR,
        INT8_SOURCES,
        Path(INT8_DIR),
        {stage: read_stage_metrics(stage) for stage in ("prune", "quantize")},
        params.benchmark,
        metrics_path("benchmark"),
        Path(METRICS_DIR) / "benchmark_latency_padded.csv",
        Path(METRICS_DIR) / "benchmark.png",
        quick=quick,
        quantize=params.quantize,
        peer_dir=Path(PEER_DIR),
        onnx_dir=Path(ONNX_DIR),
    )


if __name__ == "__main__":
    run_stage("benchmark", main)
