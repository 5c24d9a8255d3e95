"""SQuAD v1.1 JSON, read and checked, and split by article for local runs.

Only the official dev file is available offline, so a local run trains on some of its articles and evaluates
on the others: the split is by article (never by question, which would put the same paragraph on both
sides), seeded, and every reported QA number must say so.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from top.errors import DataError


@dataclass(frozen=True)
class QAExample:
    id: str
    title: str
    context: str
    question: str
    answer_texts: tuple[str, ...]
    answer_starts: tuple[int, ...]


def load_squad(path: str | Path) -> list[list[QAExample]]:
    """The file's articles, each a list of its questions; any shape or offset problem names the question."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SQuAD file not found: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise DataError(f"{path} is not SQuAD-shaped: expected an object with a 'data' list of articles")
    articles = [_article(path, index, article) for index, article in enumerate(raw["data"])]
    if not any(articles):
        raise DataError(f"{path} holds no questions")
    return articles


def _article(path: Path, index: int, article: Any) -> list[QAExample]:
    if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
        raise DataError(f"{path}: article {index} is not SQuAD-shaped (needs 'title' and a 'paragraphs' list)")
    title = str(article.get("title", f"article-{index}"))
    examples = []
    for paragraph in article["paragraphs"]:
        context = paragraph.get("context") if isinstance(paragraph, dict) else None
        if not isinstance(context, str) or not isinstance(paragraph.get("qas"), list):
            raise DataError(f"{path}: a paragraph of article {title!r} lacks a 'context' string or a 'qas' list")
        for qa in paragraph["qas"]:
            examples.append(_question(path, title, context, qa))
    return examples


def _question(path: Path, title: str, context: str, qa: Any) -> QAExample:
    qid = qa.get("id") if isinstance(qa, dict) else None
    if not isinstance(qid, str) or not isinstance(qa.get("question"), str) or not isinstance(qa.get("answers"), list):
        raise DataError(f"{path}: a question of article {title!r} lacks 'id', 'question' or 'answers' ({qid!r})")
    if not qa["answers"]:
        raise DataError(f"{path}: question {qid} has no answer (SQuAD v1.1 answers every question)")
    texts, starts = [], []
    for answer in qa["answers"]:
        text, start = answer.get("text"), answer.get("answer_start")
        if not isinstance(text, str) or not isinstance(start, int):
            raise DataError(f"{path}: question {qid} has an answer without 'text' and an integer 'answer_start'")
        if context[start : start + len(text)] != text:
            raise DataError(
                f"{path}: question {qid}: answer {text!r} does not match the context at offset {start} "
                f"({context[start : start + len(text)]!r})"
            )
        texts.append(text)
        starts.append(start)
    return QAExample(qid, title, context, qa["question"], tuple(texts), tuple(starts))


def split_by_article(
    articles: list[list[QAExample]], eval_share: float, seed: int
) -> tuple[list[QAExample], list[QAExample]]:
    """(train, eval) with whole articles on each side, about ``eval_share`` of the articles for eval."""
    if not 0 < eval_share < 1:
        raise DataError(f"the evaluation share of articles must be in (0, 1), got {eval_share}")
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    cut = max(1, round(eval_share * len(articles)))
    held_out = set(order[:cut])
    train = [example for index, article in enumerate(articles) if index not in held_out for example in article]
    evaluation = [example for index, article in enumerate(articles) if index in held_out for example in article]
    return train, evaluation
