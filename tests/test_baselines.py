"""Baselines at a given MACs ratio: the linear schedule, the search, and both baselines on a tiny model."""

import math

import pytest

from top.evaluate import evaluate
from top.pruning.baselines import (
    DevSet,
    bisect_decreasing,
    linear_keep_ratios,
    static_topk_baseline,
    static_topk_model,
    truncation_baseline,
)
from top.pruning.train import load_with_schedule


def static_topk(teacher_dir, prune_layers, target, dev, *question):
    """Static top-k fitted to ``target`` and measured on ``dev``, as the baselines stage runs it."""
    return static_topk_baseline(static_topk_model(teacher_dir, prune_layers, target, dev, *question)[0], dev)


def test_linear_schedule_cumulative_share_falls_linearly():
    assert linear_keep_ratios(4, 0.0) == [1.0, 1.0, 1.0, 1.0]
    ratios = linear_keep_ratios(4, 0.8)
    cumulative = [math.prod(ratios[: i + 1]) for i in range(4)]
    assert cumulative == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert linear_keep_ratios(2, 1.0) == [0.5, 0.0]
    assert linear_keep_ratios(4, 2.0) == [0.5, 0.0, 0.0, 0.0]  # steeper than 1: empty before the last layer


def test_bisection_finds_the_crossing_and_stops_at_the_ends():
    assert bisect_decreasing(lambda x: 1.0 - x, 0.3, 0.0, 1.0) == pytest.approx(0.7)
    assert bisect_decreasing(lambda x: 1.0 - x, -5.0, 0.0, 1.0) == pytest.approx(1.0)
    assert bisect_decreasing(lambda x: 1.0 - x, 5.0, 0.0, 1.0) == pytest.approx(0.0)


def test_baselines_at_full_budget_are_the_teacher(toy_top):
    _params, spec, splits, tokenizer, tmp_path = toy_top
    dense = evaluate(load_with_schedule(tmp_path / "teacher", [], []), spec, splits["eval"], tokenizer, 32, 24)
    dev = DevSet(spec, splits["eval"], tokenizer, 32, 24)
    static = static_topk(tmp_path / "teacher", [1, 2], 1.0, dev)
    truncated = truncation_baseline(tmp_path / "teacher", 1.0, dev)
    for result in (static, truncated):
        assert result["macs_ratio_real_lengths"] == pytest.approx(1.0)
        assert {key: result[key] for key in dense.metrics} == dense.metrics
    assert truncated["max_length"] >= max(len(ids) for ids in splits["eval"]["input_ids"])


def test_baselines_meet_a_reduced_budget(toy_top):
    _params, spec, splits, tokenizer, tmp_path = toy_top
    dev = DevSet(spec, splits["eval"], tokenizer, 32, 24)
    static = static_topk(tmp_path / "teacher", [1, 2], 0.6, dev)
    assert static["macs_ratio_real_lengths"] == pytest.approx(0.6, abs=0.05)  # rounding to whole tokens
    assert static["keep_ratios"]["layer_1"] > static["keep_ratios"]["layer_2"]
    truncated = truncation_baseline(tmp_path / "teacher", 0.6, dev)
    assert truncated["macs_ratio_real_lengths"] == pytest.approx(0.6, abs=0.1)  # whole tokens, short toy texts
    assert truncated["max_length"] < 24


def test_static_topk_meets_a_budget_under_what_a_slope_of_one_costs(toy_top):
    """A budget under what a slope of 1 costs needs a steeper schedule, and the search must reach it."""
    _params, spec, splits, tokenizer, tmp_path = toy_top
    dev = DevSet(spec, splits["eval"], tokenizer, 32, 24)
    slope_one = static_topk(tmp_path / "teacher", [1, 2], 0.0, dev)  # below every reachable budget
    assert slope_one["keep_ratios"] == {"layer_1": 0.0, "layer_2": 0.0}
    floor = slope_one["macs_ratio_real_lengths"]
    target = (floor + 0.5) / 2  # needs a slope over 1: slope 1 keeps half the tokens at layer 1
    static = static_topk(tmp_path / "teacher", [1, 2], target, dev)
    assert static["keep_ratios"]["layer_1"] < 0.5
    assert static["macs_ratio_real_lengths"] == pytest.approx(target, abs=0.05)
