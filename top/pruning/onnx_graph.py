"""The ToP classifier as one graph of tensor operations, with the token ranking, top-k and gather inside it.

The model's own physical forward chooses its shapes in Python (length groups, boolean packing), which an
exporter cannot follow into a graph. This forward computes the same function with tensor operations only, so
one exported graph (ONNX Runtime: ``top.peers``) serves every batch size and length with no Python between the
layers: the padding is dropped up front, and each prune keeps, per example, [CLS] and the round(keep_ratio * n)
best-scored of its n other live tokens, the batch cut to the largest count by ``topk`` (a size read from the
data). The kept tokens come out in score order, not input order: self-attention and the FFN do not depend on
token order once the position embeddings are added, and [CLS] stays first for the pooler, so the logits equal
the masked oracle's.
"""

from __future__ import annotations

import torch
from torch import nn

from top.pruning.model import (
    TokenPruningBertForSequenceClassification,
    attention_output,
    feed_forward,
    keep_counts,
    project_qkv,
    received_attention,
)


class PrunedLogitsGraph(nn.Module):
    """The three BERT inputs to the physically pruned logits of a ToP sequence classifier (eval mode only)."""

    def __init__(self, model: TokenPruningBertForSequenceClassification) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        bert, config = self.model.bert, self.model.config
        ratios = dict(zip(config.prune_layers, config.keep_ratios, strict=True))
        hidden = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        alive = attention_mask.bool()
        hidden, alive = keep_best(hidden, torch.zeros_like(hidden[..., 0]), _prunable(alive), alive.sum(dim=1))
        for index, layer in enumerate(bert.encoder.layer):
            # Written out in every layer (the exporter cannot take the fused kernel at a size read from the data;
            # ONNX Runtime fuses the pattern itself).
            query, key, value = project_qkv(layer.attention.self, hidden)
            logits = (query * query.shape[-1] ** -0.5) @ key.transpose(-1, -2)
            probs = logits.masked_fill(~alive[:, None, None], float("-inf")).softmax(dim=-1)
            attended = attention_output(layer.attention, probs @ value, hidden)
            ratio = ratios.get(index + 1)
            if ratio is not None:
                candidates = _prunable(alive)
                counts = keep_counts(candidates, ratio) + 1  # [CLS] besides
                attended, alive = keep_best(attended, received_attention(probs, alive), candidates, counts)
            hidden = feed_forward(layer, attended)
        return self.model.classifier(bert.pooler(hidden))


def keep_best(
    hidden: torch.Tensor, scores: torch.Tensor, candidates: torch.Tensor, counts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] first, then each example's best-scored ``candidates``: ``counts`` [B] tokens each (with [CLS]), the
    batch cut to the largest count; returns the gathered states and which of them are alive."""
    first = torch.arange(scores.shape[1], device=scores.device)[None, :] == 0
    ranked = torch.where(candidates, scores, float("-inf")).masked_fill(first, float("inf"))
    kept = counts.max().item()
    torch._check(kept >= 1)
    torch._check(kept <= scores.shape[1])
    order = ranked.topk(kept, dim=1).indices
    gathered = torch.gather(hidden, 1, order[:, :, None].expand(-1, -1, hidden.shape[-1]))
    return gathered, torch.arange(kept, device=counts.device)[None, :] < counts[:, None]


def _prunable(alive: torch.Tensor) -> torch.Tensor:
    """The live tokens a prune may remove: all but [CLS]."""
    first = torch.arange(alive.shape[1], device=alive.device)[None, :] == 0
    return alive & ~first
