"""The official metric(s) of each task, computed with scikit-learn and SciPy."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from top.data.tasks import ACCURACY, F1, MATTHEWS, PEARSON, SPEARMAN, TaskSpec


def predictions_from_logits(spec: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Class indices for classification, the single output for regression."""
    logits = np.asarray(logits)
    return logits.reshape(-1) if spec.is_regression else logits.argmax(axis=-1)


def compute_metrics(spec: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every official metric of ``spec``; F1 is for the positive class (index 1), as GLUE reports it."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    scores = {}
    for metric in spec.metrics:
        if metric == ACCURACY:
            scores[metric] = accuracy_score(labels, predictions)
        elif metric == F1:
            scores[metric] = f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0.0)
        elif metric == MATTHEWS:
            scores[metric] = matthews_corrcoef(labels, predictions)
        elif metric == PEARSON:
            scores[metric] = pearsonr(predictions, labels)[0]
        elif metric == SPEARMAN:
            scores[metric] = spearmanr(predictions, labels)[0]
        else:
            raise ValueError(f"unknown metric {metric!r}")
    return {name: float(value) for name, value in scores.items()}
