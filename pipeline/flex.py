"""Stage `flex`: Flexible BERT from the teacher. The rewired, trained supernet with gates and off-ramps goes to
artifacts/flex; its subnet grid (also before the final fine-tuning, when that runs), the grid of the same
training without (or with) grafting, and the dynamic range are measured.

Each finished training phase is kept under the checkpoint root (keyed by params, data and teacher), and a
phase in progress checkpoints every ``save_steps``: a killed run resumes where it stopped.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import datasets
import torch

from pipeline import CHECKPOINT_ROOT, FLEX_DIR, METRICS_DIR, PREPARED_DIR, TEACHER_DIR, metrics_path, run_stage
from top.atomic import atomic_directory, atomic_file, write_json
from top.backbone import check_task_head, load_float32, load_tokenizer
from top.data.batches import batch_loader
from top.data.prepare import load_prepared
from top.data.tasks import TaskSpec
from top.device import resolve_device, training_record
from top.errors import ModelBuildError
from top.fingerprint import directory_digest, fingerprint
from top.flex.importance import rewire, unit_importance
from top.flex.report import plot_flex, write_points, write_skipped
from top.flex.supernet import FlexibleBertForSequenceClassification
from top.flex.sweep import (
    DevSplit,
    best_tradeoff,
    dynamic_points,
    front_score_at,
    majority_class_scores,
    monotone_maps,
    pareto_front,
    score,
    subnet_grid,
    subnet_logits,
)
from top.flex.train import Optimization, SupernetStage, frozen_copy, gate_data, train_gates, train_supernet
from top.params import FlexParams, Params

DISABLED_SKIP = "flex.enabled is false in params.yaml; run it with `dvc exp run -S flex.enabled=true`"
QA_SKIP = "the flexible supernet is built for sequence classification; QA tasks (squad) run ToP only"
REGRESSION_SKIP = (
    "Flexible BERT's off-ramps exit on the entropy of a class distribution, which a regression output does not "
    "have; regression tasks (stsb) run ToP only"
)

log = logging.getLogger(__name__)


def depth_layers(multipliers: list[float], layers: int) -> list[int]:
    """Prefix depths in layers, deepest first (multiplier 0.75 of 6 layers -> round(4.5) = 4)."""
    return sorted({max(1, round(multiplier * layers)) for multiplier in multipliers}, reverse=True)


def train_split_parts(train: datasets.Dataset, params: FlexParams) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(training subset, held-out importance slice), drawn with the params' seed."""
    if params.importance_samples >= len(train):
        raise ValueError(f"flex.importance_samples ({params.importance_samples}) leaves no training data")
    shuffled = train.shuffle(seed=params.seed)
    importance = shuffled.select(range(params.importance_samples))
    rest = shuffled.select(range(params.importance_samples, len(shuffled)))
    if params.max_train_samples is not None and params.max_train_samples < len(rest):
        rest = rest.select(range(params.max_train_samples))
    return rest, importance


def flex_teacher(
    prepared_dir: str | Path,
    teacher_dir: str | Path,
    params: FlexParams,
    output_dir: str | Path,
    checkpoint_root: str | Path,
) -> tuple[dict[str, Any], list[dict[str, object]]]:
    """Run the whole flex job; return flex.json's content and every dynamic (map, threshold) point."""
    started = time.perf_counter()
    teacher_dir = Path(teacher_dir)
    if params.threads is not None:
        torch.set_num_threads(params.threads)
    device = torch.device(resolve_device(params.device, "flex.device"))
    spec, splits, meta = load_prepared(prepared_dir)
    if spec.is_qa or spec.is_regression:
        raise ModelBuildError(f"no Flexible BERT for task {spec.name}: {QA_SKIP if spec.is_qa else REGRESSION_SKIP}")
    check_task_head(teacher_dir, spec)
    tokenizer = load_tokenizer(str(teacher_dir))
    train, importance_slice = train_split_parts(splits["train"], params)
    teacher = frozen_copy(load_float32(FlexibleBertForSequenceClassification, teacher_dir).to(device))
    layers = teacher.config.num_hidden_layers
    depths = depth_layers(params.depths, layers)
    run = fingerprint(
        {"flex": params.model_dump(exclude={"enabled"}), "data": meta, "teacher": directory_digest(teacher_dir)}
    )
    checkpoints = Path(checkpoint_root)
    optimization = Optimization(params.batch_size, params.seed, params.save_steps, params.precision)

    base = load_float32(FlexibleBertForSequenceClassification, teacher_dir).to(device)
    base.config.flex_prefix_pooling = params.prefix_pooling  # before any off-ramp copies it
    importance = unit_importance(
        base,
        batch_loader(importance_slice, tokenizer, params.eval_batch_size, shuffle=False, seed=0),
        spec.is_regression,
    )
    rewire(base, importance)

    variants = {"grafted": params.graft_alpha, "plain": None}
    main = "grafted" if params.grafting else "plain"
    names = [main] + ([name for name in variants if name != main] if params.compare_grafting else [])
    dev = DevSplit.build(splits["eval"], params.select_share, params.seed)
    models, grids, grids_before_finetune, training = {}, {}, {}, {}
    for name in names:
        model = copy.deepcopy(base)
        stages = [
            SupernetStage(
                "width",
                params.widths,
                [layers],
                params.width_epochs,
                params.width_learning_rate,
                params.width_hidden_weight,
                variants[name],
                params.grafts_per_epoch,
            ),
            SupernetStage(
                "depth",
                params.widths,
                depths,
                params.depth_epochs,
                params.depth_learning_rate,
                params.depth_hidden_weight,
                None,
                params.grafts_per_epoch,
            ),
        ]
        if params.finetune_epochs > 0:
            stages.append(
                SupernetStage(
                    "finetune",
                    params.widths,
                    depths,
                    params.finetune_epochs,
                    params.finetune_learning_rate,
                    0.0,
                    None,
                    params.grafts_per_epoch,
                    distill=False,
                )
            )
        stage_teacher = teacher
        for stage in stages:
            if not stage.distill:
                grids_before_finetune[name] = subnet_grid(
                    model, spec, splits["eval"], dev, tokenizer, params.widths, depths, params.eval_batch_size
                )
            key = f"flex-{run}-{name}-{stage.name}"
            training[f"{name}_{stage.name}"] = _train_or_restore(
                model,
                stage_teacher,
                train,
                importance_slice,
                tokenizer,
                stage,
                optimization,
                spec.is_regression,
                checkpoints / key,
            )
            stage_teacher = frozen_copy(model)
        grids[name] = subnet_grid(
            model, spec, splits["eval"], dev, tokenizer, params.widths, depths, params.eval_batch_size
        )
        models[name] = model

    model = models[main]
    model.attach_gates(params.gate_widths)
    gates = train_gates(
        model,
        gate_data(model, train, tokenizer, params.gate_widths, params.eval_batch_size, spec.is_regression),
        params.gate_epochs,
        params.gate_learning_rate,
        params.batch_size,
        params.seed,
    )
    model.attach_ramps([depth for depth in depths if depth < layers])

    teacher_logits = subnet_logits(teacher, splits["eval"], tokenizer, 1.0, layers, params.eval_batch_size)
    teacher_scores = {
        part: round(score(spec, teacher_logits[rows], dev.labels[rows]), 4)
        for part, rows in (("dev", slice(None)), ("select", dev.select), ("report", dev.report))
    }
    maps = monotone_maps(params.width_map_grid, len(params.gate_widths))
    points = dynamic_points(
        model, spec, splits["eval"], dev, tokenizer, maps, params.thresholds, params.eval_batch_size
    )
    front = pareto_front(points, "report")
    best = best_tradeoff(points, teacher_scores["select"], params.tradeoff_tolerance)
    versus_static = [{**row, "dynamic_front_score": front_score_at(front, row["macs_ratio"])} for row in grids[main]]
    with atomic_directory(output_dir) as staging:
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
    metrics = flex_metrics(
        spec.name,
        spec.primary_metric,
        params,
        dev,
        teacher_scores,
        grids,
        grids_before_finetune,
        main,
        training,
        gates,
        points,
        front,
        best,
        versus_static,
        majority_class_scores(spec, splits["train"]["label"], dev),
        time.perf_counter() - started,
    )
    # Where the supernet phases trained, and in what compute dtype (the small gates train on the CPU).
    metrics |= training_record(device, params.precision)
    return metrics, points


def _train_or_restore(
    model: FlexibleBertForSequenceClassification,
    teacher: FlexibleBertForSequenceClassification,
    train: datasets.Dataset,
    importance_slice: datasets.Dataset,
    tokenizer: Any,
    stage: SupernetStage,
    optimization: Optimization,
    regression: bool,
    key: Path,
) -> dict[str, Any]:
    """Train one phase, or load its finished weights if an earlier run got that far."""
    finished = key.with_suffix(".done.pt")
    if finished.is_file():
        payload = torch.load(finished, map_location="cpu", weights_only=False)
        model.load_state_dict(payload["weights"])
        log.info("flex %s: restored the finished phase from %s", stage.name, finished)
        return payload["summary"] | {"restored": True}
    summary = train_supernet(
        model, teacher, train, importance_slice, tokenizer, stage, optimization, regression, key.with_suffix(".pt")
    )
    with atomic_file(finished) as staging:
        torch.save({"weights": model.state_dict(), "summary": summary}, staging)
    key.with_suffix(".pt").unlink(missing_ok=True)
    return summary


def flex_metrics(
    task: str,
    metric: str,
    params: FlexParams,
    dev: DevSplit,
    teacher: dict[str, float],
    grids: dict[str, list[dict[str, float]]],
    grids_before_finetune: dict[str, list[dict[str, float]]],
    main: str,
    training: dict[str, Any],
    gates: dict[str, Any],
    points: list[dict[str, object]],
    front: list[dict[str, object]],
    best: dict[str, object],
    versus_static: list[dict[str, Any]],
    majority: dict[str, float],
    seconds: float,
) -> dict[str, Any]:
    """flex.json: headline numbers at top level (for `dvc metrics diff`), then the grids and the curve."""
    metrics: dict[str, Any] = {
        "task": task,
        "metric": metric,
        "teacher": teacher,
        "majority_class": majority,
        "dev_split": {"select_examples": len(dev.select), "report_examples": len(dev.report), "seed": params.seed},
        "best_tradeoff": best,
        "best_tradeoff_delta_points_report": round(100 * (best["report_score"] - teacher["report"]), 3),
    }
    for name, grid in grids.items():
        metrics[f"grid_mean_dev_score_{name}"] = round(sum(row["dev_score"] for row in grid) / len(grid), 4)
        # The weakest subnet against the majority-class floor: has every subnet learned from the input?
        weakest = min(row["dev_score"] for row in grid)
        metrics[f"grid_min_margin_over_majority_points_{name}"] = round(100 * (weakest - majority["dev"]), 2)
    for name, grid in grids_before_finetune.items():
        mean = sum(row["dev_score"] for row in grid) / len(grid)
        metrics[f"grid_mean_dev_score_{name}_before_finetune"] = round(mean, 4)
    if len(grids) == 2:
        plain = {(row["width"], row["depth"]): row["dev_score"] for row in grids["plain"]}
        metrics["grafting_gain_per_subnet"] = [
            {
                "width": row["width"],
                "depth": row["depth"],
                "gain_points": round(100 * (row["dev_score"] - plain[(row["width"], row["depth"])]), 2),
            }
            for row in grids["grafted"]
        ]
    metrics |= {
        "main_supernet": main,
        "grids": grids,
        "grids_before_finetune": grids_before_finetune,
        "dynamic_vs_static": versus_static,
        "static_points_below_dynamic_front": sum(
            1
            for row in versus_static
            if row["dynamic_front_score"] is not None and row["dynamic_front_score"] > row["report_score"]
        ),
        "dynamic_front": front,
        "dynamic_points": len(points),
        "gates": gates,
        "training": training,
        "train_samples_note": "importance slice held out of train; max_train_samples caps the rest",
        "total_seconds": round(seconds, 1),
    }
    return metrics


def skip_reason(params: FlexParams, spec: TaskSpec) -> str | None:
    """Why the stage does not train a supernet for this run, or None when it does."""
    if not params.enabled:
        return DISABLED_SKIP
    if spec.is_qa:
        return QA_SKIP
    if spec.is_regression:
        return REGRESSION_SKIP
    return None


def main(params: Params) -> None:
    spec, _, _ = load_prepared(PREPARED_DIR)
    if (reason := skip_reason(params.flex, spec)) is not None:
        metrics = {"task": spec.name} | write_skipped(
            reason, Path(FLEX_DIR), Path(METRICS_DIR) / "flex_points.csv", Path(METRICS_DIR) / "flex.png"
        )
        write_json(metrics_path("flex"), metrics)
        return
    metrics, points = flex_teacher(PREPARED_DIR, TEACHER_DIR, params.flex, FLEX_DIR, CHECKPOINT_ROOT)
    write_points(points, Path(METRICS_DIR) / "flex_points.csv")
    plot_flex(metrics, points, Path(METRICS_DIR) / "flex.png")
    write_json(metrics_path("flex"), metrics)


if __name__ == "__main__":
    run_stage("flex", main)
