"""The question-ranking study on a tiny random QA teacher: each ranking is fitted to the target MACs, a protected
question stays whole, and the F1 it scores is the physical static top-k evaluation's."""

import json

import pytest

from studies.question_ranking import measure
from top.backbone import load_tokenizer
from top.data.prepare import load_prepared
from top.pruning.baselines import DevSet
from top.qa.evaluate import QAReference

from .test_answer_survival import squad_models  # noqa: F401 (a fixture)
from .test_baselines import static_topk

TARGET = 0.6


def test_each_ranking_meets_the_budget_and_scores_as_static_topk(squad_models):  # noqa: F811
    params, prepared, teacher, _ = squad_models
    record = json.loads(measure(params, prepared, teacher, TARGET).read_text(encoding="utf-8"))
    rankings = record["rankings"]
    assert set(rankings) == {"every_token", "question_protected", "question_ranks_context"}
    for found in rankings.values():
        assert found["macs_ratio_real_lengths"] == pytest.approx(TARGET, abs=0.01)
    assert rankings["every_token"]["share_entering_last_layer"]["question"] < 1.0
    for name in ("question_protected", "question_ranks_context"):
        assert rankings[name]["share_entering_each_layer"]["question"] == [1.0] * 4
    # Both count the question whole, so both get the same schedule (which rows rank is tested in test_qa_model).
    by_question = rankings["question_ranks_context"]
    assert rankings["question_protected"]["keep_ratios"] == by_question["keep_ratios"]
    assert rankings["every_token"]["keep_ratios"] != by_question["keep_ratios"]

    spec, splits, meta = load_prepared(prepared)
    reference = QAReference.from_prepared(splits, meta)
    dev = DevSet(spec, splits["eval"], load_tokenizer(str(teacher)), 8, meta["max_length"], reference)
    physical = static_topk(teacher, params.prune.prune_layers, TARGET, dev, True, True)
    assert by_question["f1"] == pytest.approx(physical["f1"], abs=1e-4)
