"""The ranking-agreement measurement of prune.json: exact where the answer is known, and counting kept tokens
as the physical forward does."""

import datasets
import numpy as np
import pytest
import torch

from top.data.batches import batch_loader, model_inputs
from top.pruning.model import TokenPruningBertForSequenceClassification
from top.pruning.ranking_quality import (
    agreement_sample,
    defined_mean,
    kept_counts,
    prunable_tokens,
    ranking_agreement,
    top_k_overlap,
)
from top.pruning.train import load_with_schedule


def test_a_layer_ranking_as_the_teacher_does_agrees_fully(toy_top):
    """A teacher cut after its first layer ranks by that layer: the model's source for prune layer 1."""
    _, _, splits, tokenizer, tmp_path = toy_top
    model = load_with_schedule(tmp_path / "teacher", [1, 2], [0.5, 0.5])
    cut = TokenPruningBertForSequenceClassification.from_pretrained(tmp_path / "teacher", num_hidden_layers=1)
    agreement = ranking_agreement({"model": model}, cut, splits["eval"], tokenizer, 8, [1, 2], [0.5, 0.5])["model"]
    assert agreement["layer_1"] == {"kendall_tau": 1.0, "top_k_overlap": 1.0}
    assert agreement["layer_2"]["kendall_tau"] < 1.0  # layer 1 ranks differently from layer 0


def test_the_teacher_measured_against_itself_is_in_range(toy_top):
    _, _, splits, tokenizer, tmp_path = toy_top
    teacher = load_with_schedule(tmp_path / "teacher", [], [])
    agreement = ranking_agreement({"teacher": teacher}, teacher, splits["eval"], tokenizer, 8, [1, 2], [0.6, 0.6])
    for layer in agreement["teacher"].values():
        assert -1.0 <= layer["kendall_tau"] <= 1.0
        assert 0.0 <= layer["top_k_overlap"] <= 1.0
    assert teacher.config.keep_ratios == []  # the measurement leaves the schedule as it was


def test_rankers_measured_together_agree_with_each_measured_alone(toy_top):
    """The teacher's own ranking shares the reference's forward: that must not change either ranker's figures."""
    _, _, splits, tokenizer, tmp_path = toy_top
    teacher = load_with_schedule(tmp_path / "teacher", [], [])
    model = load_with_schedule(tmp_path / "teacher", [1, 2], [0.5, 0.5])
    with torch.no_grad():
        for parameter in model.bert.encoder.layer[0].parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    args = (splits["eval"], tokenizer, 8, [1, 2], [0.5, 0.5])
    together = ranking_agreement({"teacher": teacher, "pruned": model}, teacher, *args)
    assert together["teacher"] == ranking_agreement({"teacher": teacher}, teacher, *args)["teacher"]
    assert together["pruned"] == ranking_agreement({"pruned": model}, teacher, *args)["pruned"]
    assert together["pruned"] != together["teacher"]


def test_a_large_split_is_sampled_the_same_way_each_time():
    split = datasets.Dataset.from_dict({"idx": list(range(50))})
    assert agreement_sample(split, 100) is split
    sample = agreement_sample(split, 20)
    assert len(sample) == 20 and len(set(sample["idx"])) == 20
    assert sample["idx"] == agreement_sample(split, 20)["idx"] != list(range(20))


@pytest.mark.parametrize("keep_ratios", [[0.5, 0.7], [0.34, 1.0], [0.0, 0.5]])
def test_kept_counts_match_the_physical_forward(toy_top, keep_ratios):
    _, _, splits, tokenizer, tmp_path = toy_top
    model = load_with_schedule(tmp_path / "teacher", [1, 2], keep_ratios).eval()
    batch = next(iter(batch_loader(splits["eval"], tokenizer, 16, shuffle=False, seed=0)))
    inputs = model_inputs(batch)
    with torch.no_grad():
        counts = model(**inputs, mode="physical").token_counts
    expected = [counts[:, layer] - 1 for layer in (1, 2)]  # entering the prune layer, less [CLS]
    for got, want in zip(kept_counts(prunable_tokens(inputs, False), keep_ratios), expected, strict=True):
        assert torch.equal(got, want)


def test_top_k_overlap_counts_shared_tokens():
    scores = np.array([0.4, 0.3, 0.2, 0.1])
    assert top_k_overlap(scores, scores, 2) == 1.0
    assert top_k_overlap(scores, scores[::-1].copy(), 2) == 0.0
    assert top_k_overlap(scores, np.array([0.4, 0.1, 0.3, 0.2]), 2) == 0.5
    assert np.isnan(top_k_overlap(scores, scores, 0))


def test_a_measure_defined_for_no_example_is_none_not_nan():
    assert defined_mean([0.5, float("nan"), 0.25]) == 0.375
    assert defined_mean([float("nan"), float("nan")]) is None
