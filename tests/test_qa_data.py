"""SQuAD v1.1: loading and checking the official dev file, the article split, features with a document
stride, answer extraction (gold spans survive the round trip exactly), and the official metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from top.backbone import load_tokenizer
from top.errors import DataError
from top.qa.features import extract_answers, qa_features
from top.qa.metrics import normalize_answer, squad_metrics, token_f1
from top.qa.squad import load_squad, split_by_article

from .conftest import DEFAULT_BACKBONE


@pytest.fixture(scope="module")
def squad_articles(shared_data_dir):
    return load_squad(shared_data_dir / "squad" / "dev-v1.1.json")


def test_official_dev_counts_and_article_split(squad_articles):
    assert len(squad_articles) == 48 and sum(len(article) for article in squad_articles) == 10570
    train, evaluation = split_by_article(squad_articles, eval_share=0.25, seed=42)
    assert len(train) + len(evaluation) == 10570
    assert not {example.title for example in train} & {example.title for example in evaluation}
    assert 0.15 < len(evaluation) / 10570 < 0.35
    again, _ = split_by_article(squad_articles, eval_share=0.25, seed=42)
    assert [example.id for example in again] == [example.id for example in train]


def test_gold_spans_round_trip_through_strided_features(squad_articles):
    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    sample = [example for article in squad_articles[::6] for example in article[:40]]
    features = qa_features(sample, tokenizer, max_length=128, stride=48)  # short windows: many overflow
    assert len(features.input_ids) > len(sample)
    assert max(len(ids) for ids in features.input_ids) <= 128
    starts, ends = [], []
    for start, end, ids in zip(features.start_positions, features.end_positions, features.input_ids, strict=True):
        one_hot_start, one_hot_end = np.full(len(ids), -10.0), np.full(len(ids), -10.0)
        if start > 0:  # the window holds the first gold answer: point the logits at it
            one_hot_start[start], one_hot_end[end] = 10.0, 10.0
        starts.append(one_hot_start)
        ends.append(one_hot_end)
    predicted = extract_answers(sample, features, starts, ends, n_best=20, max_answer_length=64)
    # Token-level extraction can only return whole WordPiece tokens: a gold answer that starts or ends inside
    # a token ("gold" in "golden", "8" in "18") cannot come back character for character. Every answer whose
    # boundaries are token boundaries must; the others must be rare.
    aligned = set()
    for feature, (start, end) in enumerate(zip(features.start_positions, features.end_positions, strict=True)):
        example = sample[features.example_index[feature]]
        span = (example.answer_starts[0], example.answer_starts[0] + len(example.answer_texts[0]))
        offsets = features.offsets[feature]
        if start > 0 and (offsets[start][0], offsets[end][1]) == span:
            aligned.add(example.id)
    assert len(aligned) >= 0.99 * len(sample)
    assert all(predicted[example.id] == example.answer_texts[0] for example in sample if example.id in aligned)
    assert squad_metrics(predicted, {e.id: e.answer_texts for e in sample})["exact_match"] >= 99.0


def test_metrics_match_hand_computed_values():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert token_f1("the Denver Broncos team", "Denver Broncos") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    golds = {"q1": ["Denver Broncos", "The Broncos"], "q2": ["1990"], "q3": ["Santa Clara, California"]}
    predictions = {"q1": "broncos", "q2": "1990", "q3": "Santa Clara"}
    scores = squad_metrics(predictions, golds)
    # q1: "broncos" equals "The Broncos" once normalised (EM 1, F1 1); q2 exact; q3: EM 0,
    # F1 = 2 * 1 * (2/3) / (1 + 2/3) = 0.8
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(100 * (1.0 + 1.0 + 0.8) / 3)


def test_malformed_squad_files_name_the_problem(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"version": "1.1", "rows": []}))
    with pytest.raises(DataError, match="not SQuAD-shaped"):
        load_squad(path)
    context = "Denver won the game."
    qa = {"id": "q-17", "question": "Who won?", "answers": [{"text": "Denver", "answer_start": 3}]}
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}))
    with pytest.raises(DataError, match="question q-17: answer 'Denver' does not match"):
        load_squad(path)
    with pytest.raises(DataError, match="not found"):
        load_squad(tmp_path / "missing.json")
