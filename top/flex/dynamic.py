"""Per-input dynamic inference: width gates pick each layer's width, off-ramps exit early when confident.

Path of one example: embeddings -> gate 0 picks layer 1's width -> layer 1 -> gate 1 picks layer 2's width ->
... and after each exit depth the off-ramp's prediction is taken if its entropy (natural log) is below the
threshold. ``width_map`` turns a gate's class into a width; it is the trade-off knob and may hold widths the
gates were never trained on (any whole number of heads).

A batch is routed per example: at each layer the live examples are grouped by their chosen width, and an
example that exits leaves the batch, so the work done is the work of each example's own path. Threshold 0
never exits; the returned trace then holds every ramp's logits, so ``resolve_exits`` can apply any threshold
afterwards without running the model again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from top.flex.supernet import FlexibleBertForSequenceClassification


@dataclass
class DynamicTrace:
    logits: torch.Tensor  # [B, C]: the prediction taken (exit ramp or final head)
    exit_depth: torch.Tensor  # [B]: layers run
    widths: torch.Tensor  # [B, L]: width of every layer run (0 where not run)
    ramp_logits: dict[int, torch.Tensor]  # depth -> [B, C], NaN rows for examples that exited before it
    final_logits: torch.Tensor  # [B, C], NaN rows for examples that exited early
    tokens: torch.Tensor  # [B]: real length


def entropy(logits: torch.Tensor) -> torch.Tensor:
    log_probs = logits.log_softmax(dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1)


@torch.no_grad()
def dynamic_forward(
    model: FlexibleBertForSequenceClassification,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    width_map: Sequence[float],
    threshold: float,
) -> DynamicTrace:
    config = model.config
    if len(width_map) != len(config.flex_gate_widths):
        raise ValueError(f"width map has {len(width_map)} entries for {len(config.flex_gate_widths)} gate classes")
    layers, batch = config.num_hidden_layers, input_ids.shape[0]
    keys = attention_mask.bool()
    hidden = model.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    choices = torch.tensor(width_map, dtype=torch.float32)
    widths = torch.zeros(batch, layers)
    nan = torch.full((batch, config.num_labels), float("nan"))
    ramp_logits = {depth: nan.clone() for depth in config.flex_exit_layers}
    logits, final_logits = nan.clone(), nan.clone()
    exit_depth = torch.full((batch,), layers)
    live = torch.arange(batch)
    pooled = model.prefix_pool(hidden, keys)
    for index in range(layers):
        chosen = choices[model.gates[index](pooled).argmax(dim=-1).cpu()]
        widths[live, index] = chosen
        hidden = _grouped_layer(model, index, hidden, keys, chosen)
        depth = index + 1
        if depth == layers:
            break
        # One pooled state per layer: the next gate reads it, and so does this depth's off-ramp.
        pooled = model.prefix_pool(hidden, keys)
        if str(depth) in model.ramps:
            ramp = model.ramps[str(depth)].classify(pooled).float().cpu()
            ramp_logits[depth][live] = ramp
            leaving = entropy(ramp) < threshold
            if leaving.any():
                logits[live[leaving]] = ramp[leaving]
                exit_depth[live[leaving]] = depth
                staying = (~leaving).to(hidden.device)
                hidden, keys, pooled, live = hidden[staying], keys[staying], pooled[staying], live[~leaving]
                if live.numel() == 0:
                    break
    if live.numel():
        final = model.final_head(hidden).float().cpu()
        final_logits[live] = final
        logits[live] = final
    return DynamicTrace(
        logits=logits,
        exit_depth=exit_depth,
        widths=widths,
        ramp_logits=ramp_logits,
        final_logits=final_logits,
        tokens=attention_mask.sum(dim=1).cpu(),
    )


def _grouped_layer(
    model: FlexibleBertForSequenceClassification,
    index: int,
    hidden: torch.Tensor,
    keys: torch.Tensor,
    widths: torch.Tensor,
) -> torch.Tensor:
    """Run layer ``index`` with each example at its own width, one sub-batch per distinct width."""
    distinct = sorted(set(widths.tolist()))
    if len(distinct) == 1:  # one route for the whole batch (always at batch 1): no gather and scatter
        return model.layer_forward(index, hidden, keys, distinct[0])
    output = torch.empty_like(hidden)
    for width in distinct:
        rows = (widths == width).nonzero().squeeze(1).to(hidden.device)
        output[rows] = model.layer_forward(index, hidden[rows], keys[rows], width)
    return output


def resolve_exits(trace: DynamicTrace, threshold: float) -> DynamicTrace:
    """What a run at ``threshold`` would have returned, from a trace taken without exits (threshold 0)."""
    logits = trace.final_logits.clone()
    exit_depth = torch.full_like(trace.exit_depth, trace.widths.shape[1])
    decided = torch.zeros(logits.shape[0], dtype=torch.bool)
    for depth in sorted(trace.ramp_logits):
        ramp = trace.ramp_logits[depth]
        leaving = ~decided & (entropy(ramp) < threshold)
        logits[leaving] = ramp[leaving]
        exit_depth[leaving] = depth
        decided |= leaving
    widths = trace.widths * (torch.arange(trace.widths.shape[1])[None, :] < exit_depth[:, None])
    return DynamicTrace(logits, exit_depth, widths, trace.ramp_logits, trace.final_logits, trace.tokens)
