"""Metric functions against values computed by hand."""

import math

import numpy as np
import pytest

from top.data.tasks import GLUE_TASKS
from top.metrics import compute_metrics, predictions_from_logits


def test_accuracy_and_f1_for_mrpc():
    labels = np.array([1, 1, 1, 0, 0, 1])
    predictions = np.array([1, 0, 1, 1, 0, 1])
    # TP=3, FP=1, FN=1 -> precision 3/4, recall 3/4, F1 3/4; 4 of 6 correct.
    scores = compute_metrics(GLUE_TASKS["mrpc"], predictions, labels)
    assert scores == {"f1": pytest.approx(0.75), "accuracy": pytest.approx(4 / 6)}


def test_matthews_correlation_for_cola():
    labels = np.array([1, 1, 1, 0, 0, 1])
    predictions = np.array([1, 0, 1, 1, 0, 1])
    # TP=3, TN=1, FP=1, FN=1: (3*1 - 1*1) / sqrt(4*4*2*2) = 2/8.
    assert compute_metrics(GLUE_TASKS["cola"], predictions, labels) == {"matthews_correlation": pytest.approx(0.25)}


def test_pearson_and_spearman_for_stsb():
    labels = np.array([1.0, 2.0, 3.0, 4.0])
    predictions = np.array([1.0, 3.0, 2.0, 4.0])
    # Both centred vectors have squared norm 5 and dot product 4 -> Pearson 0.8.
    # Ranks are the values themselves: the same numbers give Spearman 0.8 too.
    scores = compute_metrics(GLUE_TASKS["stsb"], predictions, labels)
    assert scores["pearson"] == pytest.approx(0.8)
    assert scores["spearman"] == pytest.approx(0.8)
    monotone = compute_metrics(GLUE_TASKS["stsb"], np.array([1.0, 4.0, 9.0, 16.0]), labels)
    assert monotone["spearman"] == pytest.approx(1.0)
    # Centred squares [-6.5, -3.5, 1.5, 8.5] . [-1.5, -0.5, 0.5, 1.5] = 25; squared norms 129 and 5.
    assert monotone["pearson"] == pytest.approx(25 / math.sqrt(129 * 5))


def test_predictions_from_logits():
    logits = np.array([[0.1, 2.0], [3.0, -1.0]])
    assert predictions_from_logits(GLUE_TASKS["sst2"], logits).tolist() == [1, 0]
    assert predictions_from_logits(GLUE_TASKS["stsb"], np.array([[0.5], [4.5]])).tolist() == [0.5, 4.5]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute_metrics(GLUE_TASKS["sst2"], np.array([1, 0, 1]), np.array([1, 0]))
