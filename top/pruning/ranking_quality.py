"""How well each prune layer's token ranking agrees with the teacher's final-layer ranking, on dev.

ToP's ranking distillation is there to make the early layers that choose the surviving tokens rank them as the
teacher's last layer does. This measures that directly. For each prune layer ``l``, the ranking source is the
attention the tokens receive in layer ``l - 1``. It is taken from a forward that prunes nothing, so every model
ranks the same tokens, and compared with the teacher's last layer over each example's prunable live tokens:
- Kendall's tau-b of the two orders;
- the share of the teacher's top-k that the layer's own top-k holds, where k is the number of those tokens the
  model keeps through layer ``l`` at the keep ratios given.
Both are averaged over the dev examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import datasets
import numpy as np
import torch
from scipy.stats import kendalltau
from transformers import PreTrainedTokenizerBase

from top.data.batches import batch_loader, model_inputs
from top.pruning.model import TokenPruningBertPreTrainedModel, keep_counts


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


def ranking_agreement(
    model: TokenPruningBertPreTrainedModel,
    teacher: TokenPruningBertPreTrainedModel,
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    prune_layers: Sequence[int],
    keep_ratios: Sequence[float],
    protect_question: bool = False,
) -> dict[str, dict[str, float]]:
    """Per prune layer (``layer_<l>``), the mean Kendall tau and top-k overlap of ``model``'s ranking source
    with ``teacher``'s last layer on ``split``; k follows ``keep_ratios`` (one per prune layer). The model may
    be the teacher itself: that is where the search starts."""
    model.eval()
    teacher.eval()
    device = next(model.parameters()).device
    sources = [layer - 1 for layer in prune_layers]
    last = teacher.config.num_hidden_layers - 1
    taus: dict[int, list[float]] = {layer: [] for layer in prune_layers}
    overlaps: dict[int, list[float]] = {layer: [] for layer in prune_layers}
    for batch in batch_loader(split, tokenizer, batch_size, shuffle=False, seed=0):
        inputs = model_inputs(batch, device)
        candidates = prunable_tokens(inputs, protect_question)
        reference = unpruned_token_scores(teacher, inputs, [last])[last].float().cpu().numpy()
        scores = unpruned_token_scores(model, inputs, sources)
        counts = kept_counts(candidates.cpu(), keep_ratios)
        for layer, source, kept in zip(prune_layers, sources, counts, strict=True):
            layer_scores = scores[source].float().cpu().numpy()
            for row, live in enumerate(candidates.cpu().numpy()):
                if live.sum() < 2:
                    continue
                own, target = layer_scores[row, live], reference[row, live]
                taus[layer].append(float(kendalltau(own, target).statistic))
                overlaps[layer].append(top_k_overlap(own, target, int(kept[row])))
    return {
        f"layer_{layer}": {
            "kendall_tau": round(float(np.nanmean(taus[layer])), 4),
            "top_k_overlap": round(float(np.nanmean(overlaps[layer])), 4),
        }
        for layer in prune_layers
    }
