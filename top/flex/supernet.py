"""A width- and depth-sliceable BERT classifier (the Flexible BERT supernet).

Width ``w`` keeps, in every layer it applies to, the first ``round(w * heads)`` attention heads (their Q, K, V
output rows and the matching input columns of the attention output projection) and the first
``int(heads_kept / heads * intermediate)`` FFN neurons; the hidden size and every LayerNorm never shrink.
"First" is meaningful because the units are rewired (sorted by importance) before training, so a slice is
always the most important part of the layer. Depth ``d`` runs a prefix of ``d`` layers and classifies from
its output with the head of that depth: the shared final pooler and classifier during training, or an
off-ramp (a copy of it made once training is done) when exiting early at inference. The full depth pools the
[CLS] state, as the teacher does; whatever reads a prefix's output (its head, an off-ramp, a width gate) pools
it per ``flex_prefix_pooling``: the [CLS] state (the method) or the mean of the real tokens' states, for
backbones whose [CLS] carries the input only after their last layers.

Weights keep the module names of ``BertForSequenceClassification``, so a fine-tuned teacher loads directly;
gates and off-ramps are extra modules whose layout travels in the config (``flex_exit_layers``,
``flex_gate_widths``, ``flex_prefix_pooling``) through save_pretrained/from_pretrained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import ModelOutput

from top.errors import ParamsError

Widths = float | Sequence[float]
PREFIX_POOLINGS = ("cls", "mean")


def width_units(config: BertConfig, width: float) -> tuple[int, int]:
    """(heads, FFN neurons) kept at ``width``: whole heads, and neurons in the same proportion."""
    if not 0.0 < width <= 1.0:
        raise ParamsError(f"width {width} must be in (0, 1]")
    heads = max(1, round(width * config.num_attention_heads))
    return heads, int(heads / config.num_attention_heads * config.intermediate_size)


def layer_widths(config: BertConfig, widths: Widths) -> list[float]:
    """One width per layer: a single number applies to every layer."""
    if isinstance(widths, int | float):
        return [float(widths)] * config.num_hidden_layers
    widths = [float(width) for width in widths]
    if len(widths) != config.num_hidden_layers:
        raise ParamsError(f"{len(widths)} layer widths for a {config.num_hidden_layers}-layer model")
    return widths


def pool(hidden: torch.Tensor, keys: torch.Tensor, pooling: str) -> torch.Tensor:
    """The vector a head or a gate reads from a state: its [CLS] row, or the mean of its real tokens' rows."""
    if pooling == "cls":
        return hidden[:, 0]
    live = keys[:, :, None].to(hidden.dtype)
    return (hidden * live).sum(dim=1) / live.sum(dim=1)


class ClassifierHead(nn.Module):
    """Pooler (dense + tanh on the pooled state) and classifier: an off-ramp, pooling as the prefixes do."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.pooling = config.flex_prefix_pooling
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.classify(pool(hidden, keys, self.pooling))

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits from an already pooled state (dynamic inference pools each layer's output once)."""
        return self.classifier(torch.tanh(self.dense(pooled)))


class WidthGate(nn.Module):
    """Picks the width of the next layer from the pooled state: Linear(H, H) -> ReLU -> Linear(H, classes)."""

    def __init__(self, hidden: int, classes: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(pooled)))


@dataclass
class FlexOutput(ModelOutput):
    logits: torch.Tensor | None = None
    # Embedding output and every layer's output, when asked for: [B, n, H] each.
    hidden_states: tuple[torch.Tensor, ...] | None = None


class FlexibleBertForSequenceClassification(BertPreTrainedModel):
    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        exits = list(getattr(config, "flex_exit_layers", []))
        for depth in exits:
            if not 1 <= depth < config.num_hidden_layers:
                raise ParamsError(f"exit layer {depth} must be in 1..{config.num_hidden_layers - 1}")
        config.flex_exit_layers = exits
        config.flex_gate_widths = list(getattr(config, "flex_gate_widths", []))
        # Models saved before the setting existed pooled [CLS] at every depth.
        config.flex_prefix_pooling = getattr(config, "flex_prefix_pooling", "cls")
        if config.flex_prefix_pooling not in PREFIX_POOLINGS:
            raise ParamsError(f"prefix pooling {config.flex_prefix_pooling!r} must be one of {PREFIX_POOLINGS}")
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=True)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.ramps = nn.ModuleDict({str(depth): ClassifierHead(config) for depth in exits})
        # Gate i (0 = on the embedding output) picks the width of layer i + 1.
        classes = len(config.flex_gate_widths)
        self.gates = nn.ModuleList(
            [WidthGate(config.hidden_size, classes) for _ in range(config.num_hidden_layers)] if classes else []
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        width: Widths = 1.0,
        depth: int | None = None,
        output_hidden_states: bool = False,
        head_scale: torch.Tensor | None = None,
    ) -> FlexOutput:
        """The static subnet (``width``, ``depth``); ``head_scale`` [L, heads] multiplies each head's context
        (all ones: no change) so that its gradient measures head importance."""
        depth = self.config.num_hidden_layers if depth is None else depth
        if not 1 <= depth <= self.config.num_hidden_layers:
            raise ParamsError(f"depth {depth} must be in 1..{self.config.num_hidden_layers}")
        widths = layer_widths(self.config, width)
        keys = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        states = [hidden]
        for index in range(depth):
            scale = None if head_scale is None else head_scale[index]
            hidden = self.layer_forward(index, hidden, keys, widths[index], scale)
            states.append(hidden)
        logits = self.final_head(hidden) if depth == self.config.num_hidden_layers else self.prefix_head(hidden, keys)
        return FlexOutput(logits=logits, hidden_states=tuple(states) if output_hidden_states else None)

    def final_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.bert.pooler(hidden)))

    def prefix_head(self, hidden: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """The shared final pooler and classifier on a prefix's output, pooled per ``flex_prefix_pooling``."""
        pooler = self.bert.pooler
        return self.classifier(self.dropout(pooler.activation(pooler.dense(self.prefix_pool(hidden, keys)))))

    def prefix_pool(self, hidden: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """What a prefix head or a width gate reads from a state before the last layer."""
        return pool(hidden, keys, self.config.flex_prefix_pooling)

    def layer_forward(
        self,
        index: int,
        hidden: torch.Tensor,
        keys: torch.Tensor,
        width: float,
        head_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Layer ``index`` at ``width``: sliced self-attention, then the sliced FFN, each with its residual."""
        layer = self.bert.encoder.layer[index]
        heads, neurons = width_units(self.config, width)
        attended = sliced_attention(layer.attention, hidden, keys, heads, head_scale)
        intermediate = layer.intermediate
        inner = intermediate.intermediate_act_fn(
            F.linear(attended, intermediate.dense.weight[:neurons], intermediate.dense.bias[:neurons])
        )
        output = layer.output
        projected = F.linear(inner, output.dense.weight[:, :neurons], output.dense.bias)
        return output.LayerNorm(output.dropout(projected) + attended)

    def attach_ramps(self, exit_layers: Sequence[int]) -> None:
        """Off-ramps after the given depths, each a copy of the trained final head (pooler + classifier).

        Training already fitted every prefix depth to the shared head, so a copy (pooling as the prefixes do)
        exits exactly as the static subnet of that depth classifies (the method's off-ramps are copies too and
        are not trained further).
        """
        exit_layers = sorted(exit_layers)
        self.config.flex_exit_layers = []
        self.ramps = nn.ModuleDict()
        for depth in exit_layers:
            if not 1 <= depth < self.config.num_hidden_layers:
                raise ParamsError(f"exit layer {depth} must be in 1..{self.config.num_hidden_layers - 1}")
            ramp = ClassifierHead(self.config)
            ramp.dense.load_state_dict(self.bert.pooler.dense.state_dict())
            ramp.classifier.load_state_dict(self.classifier.state_dict())
            self.ramps[str(depth)] = ramp.to(self.classifier.weight.device)
        self.config.flex_exit_layers = list(exit_layers)

    def attach_gates(self, gate_widths: Sequence[float]) -> None:
        """Fresh width gates, one class per entry of ``gate_widths`` (the widths the gates learn to pick)."""
        self.config.flex_gate_widths = [float(width) for width in gate_widths]
        device = self.classifier.weight.device
        gates = [WidthGate(self.config.hidden_size, len(gate_widths)) for _ in range(self.config.num_hidden_layers)]
        self.gates = nn.ModuleList(gates).to(device)
        for gate in self.gates:
            gate.apply(self._init_weights)


def sliced_attention(
    attention: nn.Module,
    hidden: torch.Tensor,
    keys: torch.Tensor,
    heads: int,
    head_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Self-attention over the first ``heads`` heads, output projection and LayerNorm included."""
    self_attention = attention.self
    size = self_attention.attention_head_size
    inner = heads * size
    batch, length, _ = hidden.shape

    def project(linear: nn.Linear) -> torch.Tensor:
        out = F.linear(hidden, linear.weight[:inner], linear.bias[:inner])
        return out.view(batch, length, heads, size).transpose(1, 2)

    query, key, value = project(self_attention.query), project(self_attention.key), project(self_attention.value)
    # The fused kernel: at inference it never writes the [B, heads, n, n] scores out.
    dropout = self_attention.dropout.p if self_attention.training else 0.0
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=keys[:, None, None, :], dropout_p=dropout)
    if head_scale is not None:
        context = context * head_scale[:heads, None, None]
    context = context.transpose(1, 2).reshape(batch, length, inner)
    output = attention.output
    projected = F.linear(context, output.dense.weight[:, :inner], output.dense.bias)
    return output.LayerNorm(output.dropout(projected) + hidden)
