"""Dev-set evaluation of a (token-pruning) BERT model: its metric, its MACs, and its per-example predictions.

Every stage that scores a model (prune, baselines, quantize) uses this one function, so the teacher, the pruned
model and the INT8 copies are measured with the same batches, the same physical forward and the same metric code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from top.data.batches import batch_loader, model_inputs
from top.data.tasks import TaskSpec
from top.metrics import compute_metrics, predictions_from_logits
from top.pruning.macs import EncoderDims, dense_encoder_macs, encoder_macs
from top.pruning.model import TokenPruningBertPreTrainedModel
from top.qa.evaluate import QAReference


@dataclass
class Evaluation:
    metrics: dict[str, float]
    macs_ratio: float  # pruned / dense encoder MACs, each example at its real length, averaged
    macs_ratio_padded: float  # pruned encoder MACs / dense MACs at the padded max length, averaged
    keep_ratios: list[float] = field(default_factory=list)
    # Per example, in split order (class predictions, or decoded answers for QA): lets callers compare models.
    predictions: np.ndarray | None = None


@torch.no_grad()
def evaluate(
    model: TokenPruningBertPreTrainedModel,
    spec: TaskSpec,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    max_length: int,
    reference: QAReference | None = None,
) -> Evaluation:
    """Dev metric and MACs ratios of the physically pruned model (dynamic padding, real lengths).

    A QA task (``spec.is_qa``) needs the split's ``reference`` to decode and score answers.
    """
    if spec.is_qa and reference is None:
        raise ValueError("evaluating a QA model needs the eval split's QAReference")
    model.eval()
    dims = EncoderDims.from_config(model.config)
    logits, labels, starts, ends, ratios, padded = [], [], [], [], [], []
    device = next(model.parameters()).device
    batches = batch_loader(split, tokenizer, batch_size, shuffle=False, seed=0)
    for batch in tqdm(batches, desc="evaluate", leave=False):
        inputs = model_inputs(batch, device)
        output = model(**inputs, mode="physical")
        if spec.is_qa:
            for row, length in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
                starts.append(output.start_logits[row, :length].float().cpu().numpy())
                ends.append(output.end_logits[row, :length].float().cpu().numpy())
        else:
            logits.append(output.logits.float().cpu().numpy())
            labels.append(batch["labels"].numpy())
        for counts in output.token_counts.tolist():
            pruned = encoder_macs(dims, counts)
            ratios.append(pruned / dense_encoder_macs(dims, counts[0]))
            padded.append(pruned / dense_encoder_macs(dims, max_length))
    if spec.is_qa:
        metrics, predictions = reference.score(split, starts, ends)
    else:
        predictions = predictions_from_logits(spec, np.concatenate(logits))
        metrics = compute_metrics(spec, predictions, np.concatenate(labels))
    return Evaluation(
        metrics=metrics,
        macs_ratio=float(np.mean(ratios)),
        macs_ratio_padded=float(np.mean(padded)),
        keep_ratios=list(model.config.keep_ratios),
        predictions=predictions,
    )


def prediction_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share of examples on which two models' predictions (classes or answers, in split order) are the same."""
    if np.issubdtype(reference.dtype, np.floating):
        raise ValueError("regression predictions never agree exactly; use prediction_closeness")
    return float(np.mean(reference == candidate))


def prediction_closeness(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | None]:
    """How closely two models' regression predictions track each other: their Pearson correlation (None when
    either side is constant, where it is undefined) and their mean absolute difference, in label units."""
    ours = np.asarray(reference, dtype=np.float64)
    theirs = np.asarray(candidate, dtype=np.float64)
    pearson = None if ours.std() == 0 or theirs.std() == 0 else float(np.corrcoef(ours, theirs)[0, 1])
    return {
        "pearson": None if pearson is None else round(pearson, 4),
        "mean_abs_difference": round(float(np.mean(np.abs(ours - theirs))), 4),
    }


def agreement_record(spec: TaskSpec, reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """How far a model (INT8, another runtime) moved a reference's predictions: the share of unchanged classes or
    answers, or for regression (where exact agreement means nothing) ``prediction_closeness``."""
    if spec.is_regression:
        return {"prediction_closeness": prediction_closeness(reference, candidate)}
    return {"prediction_agreement": round(prediction_agreement(reference, candidate), 4)}
