"""The official SQuAD v1.1 metrics: exact match and token F1 after the official answer normalisation
(lower case, no punctuation, no articles a/an/the, single spaces), the best over all gold answers, x 100."""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    text = "".join(character for character in text.lower() if character not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(predicted) & collections.Counter(expected)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, answers: Sequence[str]) -> float:
    """A question's official F1: the best over its gold answers."""
    return max(token_f1(prediction, answer) for answer in answers)


def squad_metrics(predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """EM and F1 over every question in ``golds``; a question without a prediction scores 0."""
    if not golds:
        raise ValueError("no gold answers to score against")
    em = f1 = 0.0
    for qid, answers in golds.items():
        prediction = predictions.get(qid, "")
        em += max(exact_match(prediction, answer) for answer in answers)
        f1 += best_f1(prediction, answers)
    return {"exact_match": 100 * em / len(golds), "f1": 100 * f1 / len(golds)}
