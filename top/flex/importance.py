"""Head and neuron importance, and the function-preserving rewiring that sorts units by it (DynaBERT).

Importance is first-order: a head's is |dL/d m_h| for a multiplicative head gate m_h = 1; an FFN neuron's is
|sum W_in[n] * dL/dW_in[n] + b_n * dL/db_n| + |sum W_out[:, n] * dL/dW_out[:, n]| (Taylor). Both are summed
over batches of a held-out slice of the training data, in eval mode and with gradients cleared before and
after, so nothing leaks into the next optimizer step (the authors' code reads the dev set and keeps the
accumulated gradients; we do not).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from top.data.batches import model_inputs
from top.flex.supernet import FlexibleBertForSequenceClassification


@dataclass(frozen=True)
class Importance:
    heads: torch.Tensor  # [layers, heads]
    neurons: torch.Tensor  # [layers, intermediate]


def unit_importance(
    model: FlexibleBertForSequenceClassification, batches: Iterable[dict[str, torch.Tensor]], regression: bool
) -> Importance:
    """Importance of every head and FFN neuron of the full-width model on ``batches`` (with labels)."""
    config = model.config
    was_training = model.training
    model.eval()
    device = model.classifier.weight.device
    head_scale = torch.ones(config.num_hidden_layers, config.num_attention_heads, device=device, requires_grad=True)
    heads = torch.zeros(config.num_hidden_layers, config.num_attention_heads)
    neurons = torch.zeros(config.num_hidden_layers, config.intermediate_size)
    for batch in batches:
        model.zero_grad(set_to_none=True)
        head_scale.grad = None
        logits = model(**model_inputs(batch, device), head_scale=head_scale).logits
        labels = batch["labels"].to(device)
        loss = F.mse_loss(logits.squeeze(-1), labels.float()) if regression else F.cross_entropy(logits, labels)
        loss.backward()
        heads += head_scale.grad.abs().cpu()
        for index, layer in enumerate(model.bert.encoder.layer):
            inner, outer = layer.intermediate.dense, layer.output.dense
            incoming = (inner.weight * inner.weight.grad).sum(dim=1) + inner.bias * inner.bias.grad
            outgoing = (outer.weight * outer.weight.grad).sum(dim=0)
            neurons[index] += (incoming.abs() + outgoing.abs()).detach().cpu()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return Importance(heads=heads, neurons=neurons)


def rewire(model: FlexibleBertForSequenceClassification, importance: Importance) -> None:
    """Permute every layer's heads and neurons into descending importance; the function is unchanged."""
    for index, layer in enumerate(model.bert.encoder.layer):
        head_order = importance.heads[index].argsort(descending=True, stable=True)
        neuron_order = importance.neurons[index].argsort(descending=True, stable=True)
        permute_layer(layer, head_order, neuron_order)


@torch.no_grad()
def permute_layer(layer: nn.Module, head_order: torch.Tensor, neuron_order: torch.Tensor) -> None:
    attention = layer.attention
    size = attention.self.attention_head_size
    rows = (
        (head_order[:, None] * size + torch.arange(size)[None, :]).reshape(-1).to(attention.output.dense.weight.device)
    )
    for linear in (attention.self.query, attention.self.key, attention.self.value):
        linear.weight.copy_(linear.weight[rows])
        linear.bias.copy_(linear.bias[rows])
    attention.output.dense.weight.copy_(attention.output.dense.weight[:, rows])
    neuron_order = neuron_order.to(layer.intermediate.dense.weight.device)
    layer.intermediate.dense.weight.copy_(layer.intermediate.dense.weight[neuron_order])
    layer.intermediate.dense.bias.copy_(layer.intermediate.dense.bias[neuron_order])
    layer.output.dense.weight.copy_(layer.output.dense.weight[:, neuron_order])
