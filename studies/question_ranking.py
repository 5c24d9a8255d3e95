"""Study: which token ranking keeps extractive-QA answers, with nothing trained
(`python -m studies.question_ranking [--prepared-dir DIR] [--teacher-dir DIR] [--target MACS]`).

ToP ranks tokens by the attention they receive from every live token, and on SQuAD most answers are pruned
before the last layer (`studies.answer_survival`). This fits static top-k to the same MACs on the teacher three
ways: ranked by every token, with the question protected, and with the protected question alone ranking the
context (`prune.rank_by_question`). For each it gives F1 on the eval windows and the share of answer tokens,
other context tokens and question tokens that enter each layer. With no training in the way, a ranking that keeps
more of the answers at equal MACs is the one worth a ToP search. The prepared task must be extractive QA.
Writes `artifacts/metrics/experiments/question-ranking-<task>.json`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pipeline import PREPARED_DIR, TEACHER_DIR, run_stage
from studies.answer_survival import pruned_pass
from studies.experiment_file import write_experiment
from top.backbone import check_task_head, load_tokenizer
from top.data.prepare import load_prepared
from top.errors import DataError
from top.params import Params
from top.pruning.baselines import DevSet, static_topk_model
from top.qa.evaluate import QAReference

# Each ranking as (prune.protect_question, prune.rank_by_question).
RANKINGS = {
    "every_token": (False, False),
    "question_protected": (True, False),
    "question_ranks_context": (True, True),
}


def measure(params: Params, prepared_dir: Path, teacher_dir: Path, target: float) -> Path:
    """Fit, run and score static top-k under each ranking; write the record and return its path."""
    spec, splits, meta = load_prepared(prepared_dir)
    if not spec.is_qa:
        raise DataError(f"{prepared_dir} holds {spec.name}, not an extractive QA task")
    check_task_head(teacher_dir, spec)
    split, reference = splits["eval"], QAReference.from_prepared(splits, meta)
    tokenizer = load_tokenizer(str(teacher_dir))
    batch_size = params.prune.eval_batch_size
    dev = DevSet(spec, split, tokenizer, batch_size, meta["max_length"], reference)
    layers = list(params.prune.prune_layers)
    rankings = {}
    for name, (protect, by_question) in RANKINGS.items():
        model, macs = static_topk_model(teacher_dir, layers, target, dev, protect, by_question)
        starts, ends, tally, _ = pruned_pass(model.eval(), split, tokenizer, batch_size)
        metrics, _ = reference.score(split, starts, ends)
        shares = tally.shares()
        rankings[name] = {
            "protect_question": protect,
            "rank_by_question": by_question,
            "f1": round(metrics["f1"], 4),
            "exact_match": round(metrics["exact_match"], 4),
            "macs_ratio_real_lengths": round(macs, 4),
            "keep_ratios": {
                f"layer_{layer}": round(r, 4) for layer, r in zip(layers, model.config.keep_ratios, strict=True)
            },
            "share_entering_last_layer": {kind: values[-1] for kind, values in shares.items()},
            "share_entering_each_layer": shares,
        }
    return write_experiment(
        f"question-ranking-{spec.name}",
        __doc__,
        torch.get_num_threads(),
        {"teacher_dir": str(teacher_dir), "target_macs": target, "prune_layers": layers, "rankings": rankings},
    )


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared-dir", type=Path, default=Path(PREPARED_DIR), help="a prepared QA task")
    parser.add_argument("--teacher-dir", type=Path, default=Path(TEACHER_DIR), help="its fine-tuned teacher")
    parser.add_argument("--target", type=float, default=params.prune.target_macs, help="MACs ratio to fit")
    args = parser.parse_args()
    print(measure(params, args.prepared_dir, args.teacher_dir, args.target))


if __name__ == "__main__":
    run_stage("question_ranking", main)
