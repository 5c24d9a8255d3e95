"""Stage `prune`: ToP token pruning of the teacher; the pruned model goes to artifacts/pruned, resumable after a kill.

The teacher is re-evaluated here with the same code as the pruned model (physical forward, same batches), so
the reported gap between the two is measured, not copied from another stage's metrics. The metrics also say how
well each prune layer's token ranking agrees with the teacher's final-layer ranking on dev, for the teacher
itself (where the search starts) and for the pruned model: what ranking distillation is meant to raise.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from pipeline import CHECKPOINT_ROOT, PREPARED_DIR, PRUNE_LIVE_DIR, PRUNED_DIR, TEACHER_DIR, metrics_path, run_stage
from top.atomic import atomic_directory, write_json
from top.backbone import check_task_head, load_tokenizer
from top.data.prepare import load_prepared
from top.device import resolve_device
from top.evaluate import Evaluation, evaluate
from top.fingerprint import directory_digest, fingerprint
from top.params import Params, PruneParams
from top.pruning.ranking_quality import AGREEMENT_EXAMPLES, ranking_agreement
from top.pruning.teacher_cache import TeacherOutputStore
from top.pruning.train import TRAINING_STATE_FORMAT, load_models, search_end, train_token_pruning
from top.qa.evaluate import QAReference

log = logging.getLogger(__name__)

HISTORY_FILE = "history.tsv"
TRAJECTORY_FILE = "trajectory.tsv"


def prune_teacher(
    prepared_dir: str | Path,
    teacher_dir: str | Path,
    params: PruneParams,
    output_dir: str | Path,
    live_dir: str | Path,
    checkpoint_root: str | Path,
) -> dict[str, Any]:
    """Train ToP on the prepared task from ``teacher_dir``; save the pruned model; return the stage metrics."""
    teacher_dir = Path(teacher_dir)
    device = resolve_device(params.device, "prune.device")
    spec, splits, meta = load_prepared(prepared_dir)
    check_task_head(teacher_dir, spec)
    tokenizer = load_tokenizer(str(teacher_dir))
    teacher, student = load_models(teacher_dir, params)
    max_length = meta["max_length"]
    reference = QAReference.from_prepared(splits, meta)
    teacher.to(device)  # evaluated where the student trains
    dense = evaluate(teacher, spec, splits["eval"], tokenizer, params.eval_batch_size, max_length, reference)
    log.info("teacher, same evaluation code: %s", dense.metrics)

    teacher_digest = directory_digest(teacher_dir)
    run = fingerprint(
        {"format": TRAINING_STATE_FORMAT, "prune": params.model_dump(), "data": meta, "teacher": teacher_digest}
    )
    checkpoint_file = Path(checkpoint_root) / f"prune-{run}.pt"
    resumed = checkpoint_file.is_file()
    store = TeacherOutputStore(Path(checkpoint_root), teacher_digest)
    model, pruned, summary = train_token_pruning(
        teacher, student, spec, splits, tokenizer, params, max_length, checkpoint_file, reference, store
    )
    with atomic_directory(output_dir) as staging:
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
    with atomic_directory(live_dir) as staging:
        write_history(staging / HISTORY_FILE, summary["history"])
        write_history(staging / TRAJECTORY_FILE, summary["trajectory"])
    checkpoint_file.unlink(missing_ok=True)
    agreement = ranking_agreement(
        {"teacher": teacher, "pruned": model},
        teacher,
        splits["eval"],
        tokenizer,
        params.eval_batch_size,
        params.prune_layers,
        pruned.keep_ratios,
        params.protect_question,
    )
    return prune_metrics(spec.name, spec.primary_metric, params, dense, pruned, summary, resumed) | {
        "ranking_agreement": agreement,
        "ranking_agreement_examples": min(len(splits["eval"]), AGREEMENT_EXAMPLES),
    }


def prune_metrics(
    task: str,
    primary_metric: str,
    params: PruneParams,
    dense: Evaluation,
    pruned: Evaluation,
    summary: dict[str, Any],
    resumed: bool,
) -> dict[str, Any]:
    """Pruned dev metrics at top level (for `dvc metrics diff`), the teacher's beside them, and the costs."""
    return {
        "task": task,
        "target_macs": params.target_macs,
        **(
            {"protect_question": params.protect_question, "rank_by_question": params.rank_by_question}
            if "exact_match" in pruned.metrics
            else {}
        ),
        **pruned.metrics,
        "teacher": dense.metrics,
        "delta_points": round(100 * (pruned.metrics[primary_metric] - dense.metrics[primary_metric]), 3),
        # Encoder MACs against the dense model: each example at its real length, and at the padded max length.
        "macs_ratio_real_lengths": round(pruned.macs_ratio, 4),
        "macs_ratio_padded_max_length": round(pruned.macs_ratio_padded, 4),
        # Where the search alone ended (deterministic masks), which fine-tuning then scales to the budget.
        "search_end_macs_ratio": round(search_end(summary["history"])["macs_ratio"], 4),
        "keep_ratios": {
            f"layer_{layer}": ratio for layer, ratio in zip(params.prune_layers, pruned.keep_ratios, strict=True)
        },
        "train_seconds": round(summary["train_seconds"], 2),
        "steps": summary["steps"],
        "device": summary["device"],
        "dtype": summary["dtype"],
        "machine": summary["machine"],
        "teacher_outputs": summary["teacher_outputs"],
        "resumed_from_checkpoint": resumed,
    }


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """One row per record (an evaluation, or a trajectory point): the training curves DVC plots against the step."""
    columns = list(dict.fromkeys(key for record in history for key in record))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t")
        writer.writeheader()
        writer.writerows(history)


def main(params: Params) -> None:
    metrics = prune_teacher(PREPARED_DIR, TEACHER_DIR, params.prune, PRUNED_DIR, PRUNE_LIVE_DIR, CHECKPOINT_ROOT)
    write_json(metrics_path("prune"), metrics)


if __name__ == "__main__":
    run_stage("prune", main)
