"""Layer-wise neural grafting: inside each layer, the weakest units take a share of the strongest ones.

Per layer, units (heads; FFN neurons) are sorted by importance; the bottom half are recipients, the top half
donors, paired weakest-with-strongest. A recipient becomes ``(1 - alpha) * own + alpha * donor`` over all of
its weights: a head's Q, K, V rows and biases and its input columns of the attention output projection; a
neuron's W_in row and bias and its W_out column. Donors and the output biases are untouched, and nothing is
re-sorted: units keep their places, so recipients mostly sit in the part only wider subnets use.
"""

from __future__ import annotations

import torch
from torch import nn

from top.flex.importance import Importance
from top.flex.supernet import FlexibleBertForSequenceClassification


def recipient_donor_pairs(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(recipients, donors): the weakest half ascending, paired with the strongest half descending."""
    half = scores.numel() // 2
    order = scores.argsort(stable=True)
    return order[:half], order.flip(0)[:half]


@torch.no_grad()
def graft(model: FlexibleBertForSequenceClassification, importance: Importance, alpha: float) -> None:
    for index, layer in enumerate(model.bert.encoder.layer):
        graft_heads(layer, *recipient_donor_pairs(importance.heads[index]), alpha)
        graft_neurons(layer, *recipient_donor_pairs(importance.neurons[index]), alpha)


def _blend(tensor: torch.Tensor, recipients: torch.Tensor, donors: torch.Tensor, alpha: float, dim: int) -> None:
    recipients, donors = recipients.to(tensor.device), donors.to(tensor.device)
    mixed = (1 - alpha) * tensor.index_select(dim, recipients) + alpha * tensor.index_select(dim, donors)
    tensor.index_copy_(dim, recipients, mixed)


def graft_heads(layer: nn.Module, recipients: torch.Tensor, donors: torch.Tensor, alpha: float) -> None:
    size = layer.attention.self.attention_head_size

    def rows(heads: torch.Tensor) -> torch.Tensor:
        return (heads[:, None] * size + torch.arange(size)[None, :]).reshape(-1)

    recipient_rows, donor_rows = rows(recipients), rows(donors)
    for linear in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
        _blend(linear.weight, recipient_rows, donor_rows, alpha, 0)
        _blend(linear.bias, recipient_rows, donor_rows, alpha, 0)
    _blend(layer.attention.output.dense.weight, recipient_rows, donor_rows, alpha, 1)


def graft_neurons(layer: nn.Module, recipients: torch.Tensor, donors: torch.Tensor, alpha: float) -> None:
    _blend(layer.intermediate.dense.weight, recipients, donors, alpha, 0)
    _blend(layer.intermediate.dense.bias, recipients, donors, alpha, 0)
    _blend(layer.output.dense.weight, recipients, donors, alpha, 1)
