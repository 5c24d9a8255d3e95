"""How well each prune layer's token ranking agrees with the teacher's final-layer ranking, on dev.

ToP's ranking distillation is there to make the early layers that choose the surviving tokens rank them as the
teacher's last layer does. This measures that directly. For each prune layer ``l``, the ranking source is the
attention the tokens receive in layer ``l - 1``. It is taken from a forward that prunes nothing, so every model
ranks the same tokens, and compared with the teacher's last layer over each example's prunable live tokens:
- Kendall's tau-b of the two orders;
- the share of the teacher's top-k that the layer's own top-k holds, where k is the number of those tokens the
  model keeps through layer ``l`` at the keep ratios given.
Both are averaged over the dev examples (a seeded sample of them on a large split).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import datasets
import numpy as np
import torch
from scipy.stats import kendalltau
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from top.data.batches import batch_loader, model_inputs
from top.pruning.model import TokenPruningBertPreTrainedModel, keep_counts

# Examples the agreement is averaged over. A mean of per-example taus over 1,024 examples has a standard error
# near 0.01, and the two unpruned forwards it takes stay minutes long at 512 tokens on a CPU.
AGREEMENT_EXAMPLES = 1024


@torch.no_grad()
def unpruned_token_scores(
    model: TokenPruningBertPreTrainedModel, inputs: dict[str, torch.Tensor], layers: Sequence[int]
) -> tuple[torch.Tensor | None, ...]:
    """The attention each token receives in ``layers`` (0-based) when the model prunes nothing."""
    saved = list(model.config.keep_ratios)
    model.set_keep_ratios([1.0] * len(saved))
    try:
        return model(**inputs, mode="masked", return_scores=list(layers)).token_scores
    finally:
        model.set_keep_ratios(saved)


def prunable_tokens(inputs: dict[str, torch.Tensor], protect_question: bool) -> torch.Tensor:
    """Live tokens a prune may remove [B, N]: all but [CLS] (and, when protected, a QA input's question)."""
    candidates = inputs["attention_mask"].bool().clone()
    candidates[:, 0] = False
    if protect_question:
        candidates &= inputs["token_type_ids"] != 0
    return candidates


def kept_counts(candidates: torch.Tensor, keep_ratios: Sequence[float]) -> list[torch.Tensor]:
    """Prunable tokens each example still has after each prune layer, as the physical forward counts them."""
    result = []
    for ratio in keep_ratios:
        candidates = torch.arange(candidates.shape[1])[None, :] < keep_counts(candidates, ratio)[:, None]
        result.append(candidates.sum(dim=1))
    return result


def top_k_overlap(layer_scores: np.ndarray, teacher_scores: np.ndarray, k: int) -> float:
    """Share of the teacher's k best tokens that are also among the layer's k best."""
    if k == 0:
        return math.nan
    layer_best = np.argsort(-layer_scores, kind="stable")[:k]
    teacher_best = np.argsort(-teacher_scores, kind="stable")[:k]
    return len(np.intersect1d(layer_best, teacher_best)) / k


def example_agreements(
    layer_scores: np.ndarray, reference: np.ndarray, candidates: np.ndarray, kept: torch.Tensor
) -> Iterator[tuple[float, float]]:
    """Kendall tau and top-k overlap of each example with at least two prunable tokens, over those tokens."""
    for row, live in enumerate(candidates):
        if live.sum() < 2:
            continue
        own, target = layer_scores[row, live], reference[row, live]
        yield float(kendalltau(own, target).statistic), top_k_overlap(own, target, int(kept[row]))


def agreement_sample(split: datasets.Dataset, max_examples: int = AGREEMENT_EXAMPLES) -> datasets.Dataset:
    """The examples the agreement is measured on: all of a split up to ``max_examples``, else a seeded draw."""
    if len(split) <= max_examples:
        return split
    return split.shuffle(seed=0).select(range(max_examples))


def defined_mean(values: Sequence[float]) -> float | None:
    """The mean over the examples where a measure is defined (not NaN), to 4 places; None where it is defined for
    none, as the top-k overlap of a layer that keeps no prunable token, so the metrics file holds no NaN."""
    defined = [value for value in values if not math.isnan(value)]
    return round(float(np.mean(defined)), 4) if defined else None


def ranking_agreement(
    rankers: Mapping[str, TokenPruningBertPreTrainedModel],
    teacher: TokenPruningBertPreTrainedModel,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    prune_layers: Sequence[int],
    keep_ratios: Sequence[float],
    protect_question: bool = False,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per ranker and prune layer (``layer_<l>``), the mean Kendall tau and top-k overlap of the ranker's ranking
    source with ``teacher``'s last layer on ``agreement_sample(split)``; k follows ``keep_ratios`` (one per prune
    layer). A ranker may be the teacher itself (where the search starts): its scores then come from the same
    forward as the reference, so each batch costs one forward per distinct model."""
    for model in (teacher, *rankers.values()):
        model.eval()
    device = next(teacher.parameters()).device
    sources = [layer - 1 for layer in prune_layers]
    last = teacher.config.num_hidden_layers - 1
    teacher_layers = [last] + (sources if any(ranker is teacher for ranker in rankers.values()) else [])
    taus = {name: {layer: [] for layer in prune_layers} for name in rankers}
    overlaps = {name: {layer: [] for layer in prune_layers} for name in rankers}
    batches = batch_loader(agreement_sample(split), tokenizer, batch_size, shuffle=False, seed=0)
    for batch in tqdm(batches, desc="ranking agreement", leave=False):
        inputs = model_inputs(batch, device)
        candidates = prunable_tokens(inputs, protect_question).cpu()
        teacher_scores = unpruned_token_scores(teacher, inputs, teacher_layers)
        reference = teacher_scores[last].float().cpu().numpy()
        counts = kept_counts(candidates, keep_ratios)
        for name, ranker in rankers.items():
            scores = teacher_scores if ranker is teacher else unpruned_token_scores(ranker, inputs, sources)
            for layer, source, kept in zip(prune_layers, sources, counts, strict=True):
                layer_scores = scores[source].float().cpu().numpy()
                for tau, overlap in example_agreements(layer_scores, reference, candidates.numpy(), kept):
                    taus[name][layer].append(tau)
                    overlaps[name][layer].append(overlap)
    return {
        name: {
            f"layer_{layer}": {
                "kendall_tau": defined_mean(taus[name][layer]),
                "top_k_overlap": defined_mean(overlaps[name][layer]),
            }
            for layer in prune_layers
        }
        for name in rankers
    }
