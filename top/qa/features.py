"""Extractive QA features and answer extraction.

A question and a long context become several features: ``[CLS] question [SEP] context window [SEP]``, windows
of at most ``max_length`` tokens overlapping by ``stride`` tokens, so every answer lies whole inside at least
one window. Each feature keeps its example id and, for context tokens only, the character span of each token,
so predictions map back to text. Training targets are the answer's first and last token in the window, or
[CLS] (index 0) when the window does not contain it whole.

Answer extraction scores every (start, end) pair among the ``n_best`` highest start and end logits of every
feature of an example, keeps pairs inside the context with ``start <= end < start + max_answer_length``, and
returns the context text of the best one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from top.qa.squad import QAExample


@dataclass
class QAFeatures:
    input_ids: list[list[int]]
    attention_mask: list[list[int]]
    token_type_ids: list[list[int]]
    example_index: list[int]  # which example each feature came from
    offsets: list[list[tuple[int, int] | None]]  # character span of each context token; None elsewhere
    start_positions: list[int]
    end_positions: list[int]


def qa_features(
    examples: Sequence[QAExample], tokenizer: PreTrainedTokenizerBase, max_length: int, stride: int
) -> QAFeatures:
    if not tokenizer.is_fast:
        raise ValueError("QA features need a fast tokenizer (offset mapping)")
    encoded = tokenizer(
        [example.question.lstrip() for example in examples],
        [example.context for example in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    features = QAFeatures([], [], [], [], [], [], [])
    for feature, example_index in enumerate(encoded["overflow_to_sample_mapping"]):
        sequence_ids = encoded.sequence_ids(feature)
        offsets = [
            tuple(span) if sequence_ids[token] == 1 else None
            for token, span in enumerate(encoded["offset_mapping"][feature])
        ]
        example = examples[example_index]
        start, end = _answer_tokens(
            offsets, example.answer_starts[0], example.answer_starts[0] + len(example.answer_texts[0])
        )
        features.input_ids.append(encoded["input_ids"][feature])
        features.attention_mask.append(encoded["attention_mask"][feature])
        features.token_type_ids.append(encoded["token_type_ids"][feature])
        features.example_index.append(example_index)
        features.offsets.append(offsets)
        features.start_positions.append(start)
        features.end_positions.append(end)
    return features


def _answer_tokens(offsets: list[tuple[int, int] | None], start_char: int, end_char: int) -> tuple[int, int]:
    """First and last token covering [start_char, end_char) in this window, or (0, 0) if it is not all here."""
    context = [token for token, span in enumerate(offsets) if span is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    start = next(token for token in context if offsets[token][1] > start_char)
    end = next(token for token in reversed(context) if offsets[token][0] < end_char)
    return start, end


def extract_answers(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    n_best: int,
    max_answer_length: int,
) -> dict[str, str]:
    """The best-scoring valid span of each example over all of its features (``""`` if none is valid)."""
    best: dict[int, tuple[float, str]] = {}
    for feature, example_index in enumerate(features.example_index):
        offsets = features.offsets[feature]
        starts, ends = np.asarray(start_logits[feature]), np.asarray(end_logits[feature])
        length = len(offsets)
        top_starts = np.argsort(starts[:length])[::-1][:n_best]
        top_ends = np.argsort(ends[:length])[::-1][:n_best]
        context = examples[example_index].context
        for start in top_starts:
            if offsets[start] is None:
                continue
            for end in top_ends:
                if offsets[end] is None or end < start or end - start + 1 > max_answer_length:
                    continue
                score = float(starts[start] + ends[end])
                if example_index not in best or score > best[example_index][0]:
                    best[example_index] = (score, context[offsets[start][0] : offsets[end][1]])
    return {example.id: best.get(index, (0.0, ""))[1] for index, example in enumerate(examples)}
