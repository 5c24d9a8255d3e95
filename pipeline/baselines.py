"""Stage `baselines`: static top-k and truncation, each tuned to the MACs ratio the ToP model reached."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline import PREPARED_DIR, TEACHER_DIR, metrics_path, read_stage_metrics, run_stage
from top.atomic import write_json
from top.backbone import check_task_head, load_tokenizer
from top.data.prepare import load_prepared
from top.errors import DataError
from top.params import Params, PruneParams
from top.pruning.baselines import DevSet, static_topk_baseline, static_topk_model, truncation_baseline
from top.qa.evaluate import QAReference

log = logging.getLogger(__name__)


def compare_with_baselines(
    prepared_dir: str | Path, teacher_dir: str | Path, top: dict[str, Any], params: PruneParams
) -> dict[str, Any]:
    """ToP's measured result next to static top-k and truncation tuned to the same real-length MACs ratio."""
    teacher_dir = Path(teacher_dir)
    spec, splits, meta = load_prepared(prepared_dir)
    if top.get("task") != spec.name:
        raise DataError(f"the prune metrics are for task {top.get('task')!r}, the prepared data for {spec.name!r}")
    check_task_head(teacher_dir, spec)
    target = top["macs_ratio_real_lengths"]
    tokenizer = load_tokenizer(str(teacher_dir))
    reference = QAReference.from_prepared(splits, meta)
    dev = DevSet(spec, splits["eval"], tokenizer, params.eval_batch_size, meta["max_length"], reference)
    static_model, _ = static_topk_model(
        teacher_dir, params.prune_layers, target, dev, params.protect_question, params.rank_by_question
    )
    static = static_topk_baseline(static_model, dev)
    log.info("static top-k at MACs %.3f: %s", target, static)
    if spec.is_qa:
        truncation = {"skipped": "truncating QA windows cuts answers out of the context; no QA baseline"}
    else:
        truncation = truncation_baseline(teacher_dir, target, dev)
    log.info("truncation at MACs %.3f: %s", target, truncation)
    primary = spec.primary_metric
    return {
        "task": spec.name,
        "metric": primary,
        "macs_ratio_real_lengths": target,
        "teacher": top["teacher"][primary],
        "top": top[primary],
        "static_topk": static[primary],
        "truncation": truncation.get(primary),
        "details": {
            "top": {
                key: top[key] for key in ("macs_ratio_real_lengths", "macs_ratio_padded_max_length", "keep_ratios")
            },
            "static_topk": static,
            "truncation": truncation,
        },
    }


def main(params: Params) -> None:
    metrics = compare_with_baselines(PREPARED_DIR, TEACHER_DIR, read_stage_metrics("prune"), params.prune)
    write_json(metrics_path("baselines"), metrics)


if __name__ == "__main__":
    run_stage("baselines", main)
