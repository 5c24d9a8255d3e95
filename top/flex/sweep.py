"""Evaluating the supernet: the static subnet grid, and the dynamic range swept over gate maps and thresholds.

Dev is split once (seeded) into a *select* part, where the best trade-off is chosen, and a *report* part,
where every reported dynamic number is measured, so that the choice is not fitted to the numbers shown.
MACs ratios are per example at its real length, against the dense encoder, then averaged.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from top.data.batches import batch_loader, model_inputs
from top.data.tasks import TaskSpec
from top.flex.dynamic import DynamicTrace, dynamic_forward, resolve_exits
from top.flex.macs import dense_macs, path_macs, subnet_macs
from top.flex.supernet import FlexibleBertForSequenceClassification
from top.metrics import compute_metrics, predictions_from_logits


@dataclass(frozen=True)
class DevSplit:
    """Logits-independent facts of the dev set: labels, lengths, and the select/report partition."""

    labels: np.ndarray
    tokens: np.ndarray
    select: np.ndarray  # indices
    report: np.ndarray

    @classmethod
    def build(cls, split: datasets.Dataset, select_share: float, seed: int) -> DevSplit:
        labels = np.asarray(split["label"])
        tokens = np.asarray([sum(mask) for mask in split["attention_mask"]])
        order = np.random.default_rng(seed).permutation(len(labels))
        cut = round(select_share * len(labels))
        return cls(labels=labels, tokens=tokens, select=np.sort(order[:cut]), report=np.sort(order[cut:]))


def score(spec: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> float:
    return compute_metrics(spec, predictions_from_logits(spec, logits), labels)[spec.primary_metric]


def majority_class_scores(spec: TaskSpec, train_labels: Sequence[int], dev: DevSplit) -> dict[str, float]:
    """The score of always answering the training split's most frequent class (dev and its report part): the
    floor that a subnet which learned nothing from the input sits at."""
    label = int(np.bincount(np.asarray(train_labels)).argmax())
    answers = np.full(len(dev.labels), label)
    return {"label": label} | {
        part: round(compute_metrics(spec, answers[rows], dev.labels[rows])[spec.primary_metric], 4)
        for part, rows in (("dev", slice(None)), ("report", dev.report))
    }


@torch.no_grad()
def subnet_logits(
    model: FlexibleBertForSequenceClassification,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    width: float,
    depth: int,
    batch_size: int,
) -> np.ndarray:
    model.eval()
    device = model.classifier.weight.device
    batches = batch_loader(split, tokenizer, batch_size, shuffle=False, seed=0)
    return np.concatenate(
        [model(**model_inputs(b, device), width=width, depth=depth).logits.float().cpu().numpy() for b in batches]
    )


def subnet_grid(
    model: FlexibleBertForSequenceClassification,
    spec: TaskSpec,
    split: datasets.Dataset,
    dev: DevSplit,
    tokenizer: PreTrainedTokenizerBase,
    widths: Sequence[float],
    depths: Sequence[int],
    batch_size: int,
) -> list[dict[str, float]]:
    """Every static subnet's dev score (whole dev and report part) and MACs ratio."""
    config = model.config
    rows = []
    for depth in depths:
        for width in widths:
            logits = subnet_logits(model, split, tokenizer, width, depth, batch_size)
            ratios = [subnet_macs(config, n, [width] * depth) / dense_macs(config, n) for n in dev.tokens]
            rows.append(
                {
                    "width": width,
                    "depth": depth,
                    "dev_score": round(score(spec, logits, dev.labels), 4),
                    "report_score": round(score(spec, logits[dev.report], dev.labels[dev.report]), 4),
                    "macs_ratio": round(float(np.mean(np.asarray(ratios)[dev.report])), 4),
                }
            )
    return rows


@torch.no_grad()
def dynamic_trace(
    model: FlexibleBertForSequenceClassification,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    width_map: Sequence[float],
    batch_size: int,
) -> DynamicTrace:
    """The whole dev set routed with ``width_map`` and no exits (thresholds are applied afterwards)."""
    model.eval()
    device = model.classifier.weight.device
    traces = []
    for batch in batch_loader(split, tokenizer, batch_size, shuffle=False, seed=0):
        inputs = model_inputs(batch, device)
        traces.append(
            dynamic_forward(
                model, inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"), width_map, 0.0
            )
        )
    return DynamicTrace(
        logits=torch.cat([t.logits for t in traces]),
        exit_depth=torch.cat([t.exit_depth for t in traces]),
        widths=torch.cat([t.widths for t in traces]),
        ramp_logits={d: torch.cat([t.ramp_logits[d] for t in traces]) for d in traces[0].ramp_logits},
        final_logits=torch.cat([t.final_logits for t in traces]),
        tokens=torch.cat([t.tokens for t in traces]),
    )


def trace_macs_ratios(model: FlexibleBertForSequenceClassification, trace: DynamicTrace) -> np.ndarray:
    """Per example: its path's MACs (layers, gates evaluated, ramps passed) over the dense encoder's."""
    config = model.config
    ratios = []
    for widths, depth, tokens in zip(
        trace.widths.tolist(), trace.exit_depth.tolist(), trace.tokens.tolist(), strict=True
    ):
        passed = sum(1 for exit_depth in config.flex_exit_layers if exit_depth < depth)
        macs = path_macs(config, tokens, widths[:depth], gates=depth, ramps_passed=passed)
        ratios.append(macs / dense_macs(config, tokens))
    return np.asarray(ratios)


def monotone_maps(grid: Sequence[float], classes: int) -> list[tuple[float, ...]]:
    """Every non-decreasing map from gate classes to grid widths (harder inputs never get less width)."""
    return list(itertools.combinations_with_replacement(sorted(grid), classes))


def dynamic_points(
    model: FlexibleBertForSequenceClassification,
    spec: TaskSpec,
    split: datasets.Dataset,
    dev: DevSplit,
    tokenizer: PreTrainedTokenizerBase,
    maps: Sequence[Sequence[float]],
    thresholds: Sequence[float],
    batch_size: int,
) -> list[dict[str, object]]:
    """One point per (map, threshold): score and mean MACs ratio on the select and on the report part."""
    points = []
    for width_map in tqdm(maps, desc="flex dynamic sweep"):
        trace = dynamic_trace(model, split, tokenizer, width_map, batch_size)
        for threshold in thresholds:
            resolved = resolve_exits(trace, threshold)
            logits, ratios = resolved.logits.numpy(), trace_macs_ratios(model, resolved)
            point: dict[str, object] = {"map": list(width_map), "threshold": threshold}
            for part, rows in (("select", dev.select), ("report", dev.report)):
                point[f"{part}_score"] = round(score(spec, logits[rows], dev.labels[rows]), 4)
                point[f"{part}_macs_ratio"] = round(float(ratios[rows].mean()), 4)
            point["mean_exit_depth"] = round(float(resolved.exit_depth[dev.report].float().mean()), 3)
            points.append(point)
    return points


def pareto_front(points: Sequence[dict[str, object]], part: str) -> list[dict[str, object]]:
    """Points no other point beats on both score (higher) and MACs (lower), by increasing MACs."""
    ordered = sorted(points, key=lambda p: (p[f"{part}_macs_ratio"], -p[f"{part}_score"]))
    front, best = [], -np.inf
    for point in ordered:
        if point[f"{part}_score"] > best:
            front.append(point)
            best = point[f"{part}_score"]
    return front


def best_tradeoff(
    points: Sequence[dict[str, object]], teacher_select_score: float, tolerance: float
) -> dict[str, object]:
    """Chosen on the select part: the cheapest point within ``tolerance`` of the teacher; if none is, the
    best-scoring one."""
    close = [p for p in points if p["select_score"] >= teacher_select_score - tolerance]
    if close:
        return min(close, key=lambda p: (p["select_macs_ratio"], -p["select_score"]))
    return max(points, key=lambda p: (p["select_score"], -p["select_macs_ratio"]))


def front_score_at(front: Sequence[dict[str, object]], macs_ratio: float) -> float | None:
    """The best report score the dynamic front reaches at no more than ``macs_ratio`` MACs."""
    reachable = [p["report_score"] for p in front if p["report_macs_ratio"] <= macs_ratio]
    return max(reachable) if reachable else None
