"""Scoring a QA model's start/end logits on a prepared eval split: decode answers, then official EM/F1.

Every stage that scores QA (teacher, prune, quantize) goes through ``QAReference.score``, with the decoding params
the prepare stage recorded in ``meta.json``, so two models are always compared under the same decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from top.qa.features import QAFeatures, extract_answers
from top.qa.metrics import squad_metrics
from top.qa.squad import QAExample


@dataclass(frozen=True)
class QAReference:
    """What turns an eval split's window logits into scored answers: its questions and the decoding params."""

    examples: datasets.Dataset  # the prepared ``eval_examples``: id, context, answer_texts
    decoding: dict[str, Any]  # meta.json's ``qa``: n_best and max_answer_length among others

    @classmethod
    def from_prepared(cls, splits: datasets.DatasetDict, meta: dict[str, Any]) -> QAReference | None:
        """The reference of a prepared QA task; None for a classification task."""
        return cls(splits["eval_examples"], meta["qa"]) if "qa" in meta else None

    def score(
        self, windows: datasets.Dataset, start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray]
    ) -> tuple[dict[str, float], np.ndarray]:
        """(EM/F1 in [0, 1] like every other metric here, the decoded answers in question order)."""
        examples = [
            QAExample(qid, "", context, "", tuple(answers), ())
            for qid, context, answers in zip(
                self.examples["id"], self.examples["context"], self.examples["answer_texts"], strict=True
            )
        ]
        features = QAFeatures(
            input_ids=[],
            attention_mask=[],
            token_type_ids=[],
            example_index=list(windows["example_index"]),
            offsets=[
                [None if begin < 0 else (begin, end) for begin, end in zip(starts, ends, strict=True)]
                for starts, ends in zip(windows["offset_start"], windows["offset_end"], strict=True)
            ],
            start_positions=[],
            end_positions=[],
        )
        answers = extract_answers(
            examples, features, start_logits, end_logits, self.decoding["n_best"], self.decoding["max_answer_length"]
        )
        scores = squad_metrics(answers, {example.id: example.answer_texts for example in examples})
        ordered = np.asarray([answers[example.id] for example in examples], dtype=object)
        return {name: value / 100.0 for name, value in scores.items()}, ordered
