"""Study: whether a pruned QA model loses its F1 on the questions whose answer tokens it pruned
(`python -m studies.answer_survival [--prepared-dir DIR] [--teacher-dir DIR] [--pruned-dir DIR]`).

ToP ranks tokens by the attention they receive. A span head needs the answer's tokens, and a token pruned before
the last layer can still be picked, but only from the state it had when it was dropped. Over the eval windows
that hold their question's answer, this measures the share of the answer's tokens, of the other context tokens
and of the question's tokens that enter each layer. It then splits the questions by whether the answer's first
and last tokens reached the last layer in some window, with the pruned model's F1 and the teacher's F1 on each
group. A gap there that the teacher does not show on the same questions points at the ranking, not at harder
questions. The prepared task must be extractive QA (squad). Writes
`artifacts/metrics/experiments/answer-survival-<task>.json`, or the name given with `--record`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from pipeline import PREPARED_DIR, PRUNED_DIR, TEACHER_DIR, run_stage
from studies.experiment_file import write_experiment
from top.backbone import check_task_head, load_float32, load_tokenizer
from top.data.batches import batch_loader, model_inputs
from top.data.prepare import load_prepared
from top.errors import DataError
from top.evaluate import evaluate
from top.params import Params
from top.pruning.model import TokenPruningBertForQuestionAnswering, TokenPruningBertPreTrainedModel
from top.qa.evaluate import QAReference
from top.qa.metrics import best_f1


def layer_inputs(scores: tuple[torch.Tensor, ...], counts: torch.Tensor) -> torch.Tensor:
    """Which tokens enter each layer [B, layers, N], from a masked forward's per-layer received attention.

    In ``masked`` mode a pruned token is masked as a key, so it receives exactly no attention, while a live one
    always receives some. The live counts are checked against the forward's own ``token_counts``.
    """
    alive = torch.stack(scores, dim=1) > 0
    if not torch.equal(alive.sum(dim=2), counts[:, : alive.shape[1]]):
        raise RuntimeError("received attention does not match the live token counts: a live token received none")
    return alive


@dataclass
class SurvivalTally:
    """Tokens of each kind that enter each layer, summed over the answer-holding windows."""

    layers: int
    entered: dict[str, np.ndarray] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, alive: torch.Tensor, tokens: torch.Tensor) -> None:
        """Count the ``tokens`` ([N] bool) of one window that enter each layer (``alive`` [layers, N])."""
        self.entered.setdefault(kind, np.zeros(self.layers))
        self.entered[kind] += alive[:, tokens].sum(dim=1).numpy()
        self.total[kind] = self.total.get(kind, 0) + int(tokens.sum())

    def shares(self) -> dict[str, list[float]]:
        return {kind: [round(float(n) / self.total[kind], 4) for n in self.entered[kind]] for kind in self.entered}


def answer_kinds(row: int, inputs: dict[str, torch.Tensor], start: int, end: int) -> dict[str, torch.Tensor]:
    """One window's tokens by role: the answer span, the rest of the context segment, and the question segment
    after [CLS] (its closing [SEP] included)."""
    length = int(inputs["attention_mask"][row].sum())
    segment = inputs["token_type_ids"][row, :length]
    positions = torch.arange(length)
    answer = (positions >= start) & (positions <= end)
    question = (segment == 0) & (positions > 0)
    return {"answer": answer, "other_context": (segment == 1) & ~answer, "question": question}


@torch.no_grad()
def pruned_pass(
    model: TokenPruningBertPreTrainedModel,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
) -> tuple[list[np.ndarray], list[np.ndarray], SurvivalTally, list[bool]]:
    """The pruned model's window logits (masked mode, which equals the physical forward), the token tally, and
    per window whether its answer's first and last tokens reach the last layer (False where it holds none)."""
    layers = model.config.num_hidden_layers
    tally = SurvivalTally(layers)
    starts, ends, reached = [], [], []
    for batch in tqdm(batch_loader(split, tokenizer, batch_size, shuffle=False, seed=0), desc="pruned model"):
        inputs = model_inputs(batch)
        output = model(**inputs, mode="masked", return_scores=True)
        alive = layer_inputs(output.token_scores, output.token_counts)
        for row, length in enumerate(inputs["attention_mask"].sum(dim=1).tolist()):
            starts.append(output.start_logits[row, :length].numpy())
            ends.append(output.end_logits[row, :length].numpy())
            start, end = int(batch["start_positions"][row]), int(batch["end_positions"][row])
            if start == 0:  # the window does not hold the whole answer
                reached.append(False)
                continue
            window = alive[row, :, :length]
            for kind, tokens in answer_kinds(row, inputs, start, end).items():
                tally.add(kind, window, tokens)
            reached.append(bool(window[-1, start] and window[-1, end]))
    return starts, ends, tally, reached


def question_f1(predictions: np.ndarray, answer_texts: list[list[str]]) -> np.ndarray:
    """Each question's official F1 (best over its gold answers)."""
    return np.asarray([best_f1(str(p), golds) for p, golds in zip(predictions, answer_texts, strict=True)])


def group_record(mask: np.ndarray, pruned_f1: np.ndarray, teacher_f1: np.ndarray) -> dict[str, float | int | None]:
    """A group of questions: how many, and both models' mean F1 on them (None for an empty group)."""
    return {
        "questions": int(mask.sum()),
        "pruned_f1": round(float(pruned_f1[mask].mean()), 4) if mask.any() else None,
        "teacher_f1": round(float(teacher_f1[mask].mean()), 4) if mask.any() else None,
    }


def measure(params: Params, prepared_dir: Path, teacher_dir: Path, pruned_dir: Path, record: str | None = None) -> Path:
    """Run the pruned model (masked, with its per-layer scores) and the teacher over the eval windows; write the
    record (``record``, by default named by the task) and return its path."""
    spec, splits, meta = load_prepared(prepared_dir)
    if not spec.is_qa:
        raise DataError(f"{prepared_dir} holds {spec.name}, not an extractive QA task")
    for directory in (teacher_dir, pruned_dir):
        check_task_head(directory, spec)
    split, reference = splits["eval"], QAReference.from_prepared(splits, meta)
    tokenizer = load_tokenizer(str(teacher_dir))
    batch_size = params.prune.eval_batch_size
    pruned = load_float32(TokenPruningBertForQuestionAnswering, pruned_dir).eval()
    starts, ends, tally, reached = pruned_pass(pruned, split, tokenizer, batch_size)
    metrics, predictions = reference.score(split, starts, ends)
    teacher = load_float32(TokenPruningBertForQuestionAnswering, teacher_dir)
    teacher_run = evaluate(teacher, spec, split, tokenizer, batch_size, meta["max_length"], reference)
    golds = list(reference.examples["answer_texts"])
    pruned_f1, teacher_f1 = question_f1(predictions, golds), question_f1(teacher_run.predictions, golds)
    holds_answer = np.asarray(split["start_positions"]) > 0
    holds, kept = np.zeros(len(golds), dtype=bool), np.zeros(len(golds), dtype=bool)
    np.logical_or.at(holds, np.asarray(split["example_index"]), holds_answer)
    np.logical_or.at(kept, np.asarray(split["example_index"]), np.asarray(reached))
    return write_experiment(
        record or f"answer-survival-{spec.name}",
        __doc__,
        torch.get_num_threads(),
        {
            "teacher_dir": str(teacher_dir),
            "pruned_dir": str(pruned_dir),
            "keep_ratios": list(pruned.config.keep_ratios),
            "prune_layers": list(pruned.config.prune_layers),
            "protect_question": bool(pruned.config.protect_question),
            "rank_by_question": bool(pruned.config.rank_by_question),
            "pruned_f1": round(metrics["f1"], 4),
            "teacher_f1": round(teacher_run.metrics["f1"], 4),
            "answer_windows": int(holds_answer.sum()),
            "share_entering_each_layer": tally.shares(),
            "questions_by_answer_reaching_last_layer": {
                "reached": group_record(holds & kept, pruned_f1, teacher_f1),
                "pruned_before": group_record(holds & ~kept, pruned_f1, teacher_f1),
                "no_window_holds_the_answer": group_record(~holds, pruned_f1, teacher_f1),
            },
        },
    )


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared-dir", type=Path, default=Path(PREPARED_DIR), help="a prepared QA task")
    parser.add_argument("--teacher-dir", type=Path, default=Path(TEACHER_DIR), help="its fine-tuned teacher")
    parser.add_argument("--pruned-dir", type=Path, default=Path(PRUNED_DIR), help="the ToP model of that teacher")
    parser.add_argument("--record", help="the record's name (default: answer-survival-<task>)")
    args = parser.parse_args()
    print(measure(params, args.prepared_dir, args.teacher_dir, args.pruned_dir, args.record))


if __name__ == "__main__":
    run_stage("answer_survival", main)
