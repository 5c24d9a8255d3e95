"""The baselines ToP is measured against, at the MACs ratio ToP actually reached.

Both start from the fine-tuned teacher and train nothing:
- static attention top-k (LTP/SpAtten style): the same attention-received ranking and physical removal as ToP,
  but with a fixed keep schedule in which the cumulative share of kept tokens falls linearly with depth; its
  slope is set so that the schedule's MACs match ToP's;
- truncation: the inputs are tokenized to a shorter max length, chosen so that the dense MACs match ToP's
  (classification only: cutting a QA window cuts answers out of the context, which is no baseline).
Both MACs ratios are against the dense model on the same examples at their real (untruncated) lengths.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from top.data.prepare import tokenize_split
from top.data.tasks import TaskSpec
from top.evaluate import Evaluation, evaluate
from top.pruning.l0 import expected_macs_ratio
from top.pruning.macs import EncoderDims, dense_encoder_macs
from top.pruning.model import TokenPruningBertPreTrainedModel
from top.pruning.train import load_with_schedule, split_lengths
from top.qa.evaluate import QAReference

SEARCH_STEPS = 40


@dataclass(frozen=True)
class DevSet:
    """Where and how a baseline is measured: the dev split, its task and the evaluation batching."""

    spec: TaskSpec
    split: datasets.Dataset
    tokenizer: PreTrainedTokenizerBase
    batch_size: int
    max_length: int
    reference: QAReference | None = None  # QA tasks: the questions the windows' answers are scored against

    def evaluate(self, model: TokenPruningBertPreTrainedModel, split: datasets.Dataset | None = None) -> Evaluation:
        split = self.split if split is None else split
        return evaluate(model, self.spec, split, self.tokenizer, self.batch_size, self.max_length, self.reference)


def linear_keep_ratios(prune_layers: int, slope: float) -> list[float]:
    """Per-layer keep ratios whose cumulative share after the i-th of P prune layers is ``1 - slope * i / P``,
    floored at 0: a slope over 1 empties the sequence (but [CLS]) before the last prune layer, which budgets
    under what slope 1 costs need."""
    cumulative = [max(0.0, 1.0 - slope * i / prune_layers) for i in range(prune_layers + 1)]
    return [after / before if before > 0 else 0.0 for before, after in itertools.pairwise(cumulative)]


def bisect_decreasing(function: Callable[[float], float], target: float, low: float, high: float) -> float:
    """The x in [low, high] where a non-increasing ``function`` crosses ``target`` (an end if it never does)."""
    for _ in range(SEARCH_STEPS):
        middle = (low + high) / 2
        if function(middle) > target:
            low = middle
        else:
            high = middle
    return high


def static_topk_model(
    teacher_dir: str | Path,
    prune_layers: list[int],
    target_ratio: float,
    dev: DevSet,
    protect_question: bool = False,
    rank_by_question: bool = False,
) -> tuple[TokenPruningBertPreTrainedModel, float]:
    """The teacher with the linear static top-k schedule whose MACs on ``dev`` are ``target_ratio``, ranking tokens
    as the ToP model does (``protect_question``, ``rank_by_question``: see ``load_with_schedule``), and the MACs
    ratio that schedule reaches as the search's constraint counts it (whole tokens aside)."""
    model = load_with_schedule(teacher_dir, prune_layers, [1.0] * len(prune_layers), protect_question, rank_by_question)
    dims = EncoderDims.from_config(model.config)
    # A protected question is never pruned, so the schedule's MACs count it whole, as ToP's constraint does.
    lengths, fixed = split_lengths(dev.split, dev.tokenizer, dev.batch_size, model.config)

    def macs_at(slope: float) -> float:
        ratios = torch.tensor(linear_keep_ratios(len(prune_layers), slope), dtype=torch.float64)
        return float(expected_macs_ratio(dims, lengths.double(), prune_layers, ratios, fixed))

    slope = bisect_decreasing(macs_at, target_ratio, 0.0, float(len(prune_layers)))
    model.set_keep_ratios(linear_keep_ratios(len(prune_layers), slope))
    return model, macs_at(slope)


def static_topk_baseline(model: TokenPruningBertPreTrainedModel, dev: DevSet) -> dict[str, Any]:
    """A static top-k model (``static_topk_model``) measured on ``dev``."""
    prune_layers = model.config.prune_layers
    evaluation = dev.evaluate(model)
    return {
        **evaluation.metrics,
        "macs_ratio_real_lengths": round(evaluation.macs_ratio, 4),
        "macs_ratio_padded_max_length": round(evaluation.macs_ratio_padded, 4),
        "keep_ratios": {
            f"layer_{layer}": round(ratio, 4) for layer, ratio in zip(prune_layers, evaluation.keep_ratios, strict=True)
        },
    }


def truncation_baseline(teacher_dir: str | Path, target_ratio: float, dev: DevSet) -> dict[str, Any]:
    """Dense teacher on inputs tokenized to the max length whose MACs come closest to ``target_ratio``."""
    model = load_with_schedule(teacher_dir, [], [])
    dims = EncoderDims.from_config(model.config)
    lengths = np.asarray([len(ids) for ids in dev.split["input_ids"]])
    dense = np.asarray([dense_encoder_macs(dims, int(n)) for n in lengths])

    def macs_at(cut: int) -> float:
        truncated = np.asarray([dense_encoder_macs(dims, int(n)) for n in np.minimum(lengths, cut)])
        return float(np.mean(truncated / dense))

    # [CLS] + at least one token + [SEP] (two [SEP]s and a token each for pairs).
    shortest = 5 if dev.spec.is_pair else 3
    cut = min(range(shortest, dev.max_length + 1), key=lambda length: abs(macs_at(length) - target_ratio))
    truncated = tokenize_split(dev.split, dev.spec, dev.tokenizer, cut)
    evaluation = dev.evaluate(model, truncated)
    measured = np.asarray([dense_encoder_macs(dims, len(ids)) for ids in truncated["input_ids"]]) / dense
    padded = dense_encoder_macs(dims, cut) / dense_encoder_macs(dims, dev.max_length)
    return {
        **evaluation.metrics,
        "max_length": cut,
        "macs_ratio_real_lengths": round(float(measured.mean()), 4),
        "macs_ratio_padded_max_length": round(padded, 4),
    }
