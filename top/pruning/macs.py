"""Multiply-accumulate counts of a BERT encoder whose sequence shrinks from layer to layer.

Dimensions come from the model's own config (never BERT-base constants). Only matrix products are counted:
these are the MACs that ``torch.utils.flop_counter`` measures (FLOPs = 2 x MACs); softmax, LayerNorm,
GELU, biases and embedding lookups are element-wise and left out, as in ToP's cost model (its extra n^2
softmax term is dropped for the same reason).

Token removal happens after a layer's self-attention and before its FFN (ToP's placement): the attention
of layer i runs on ``lengths[i]`` tokens and its FFN on ``lengths[i + 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import BertConfig


@dataclass(frozen=True)
class EncoderDims:
    hidden: int
    heads: int
    head_dim: int
    intermediate: int
    layers: int

    @classmethod
    def from_config(cls, config: BertConfig) -> EncoderDims:
        return cls(
            hidden=config.hidden_size,
            heads=config.num_attention_heads,
            head_dim=config.hidden_size // config.num_attention_heads,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
        )


def attention_macs(dims: EncoderDims, tokens: float) -> float:
    """Q, K, V and output projections plus the two n x n products of every head."""
    inner = dims.heads * dims.head_dim
    projections = 3 * tokens * dims.hidden * inner + tokens * inner * dims.hidden
    return projections + 2 * dims.heads * tokens * tokens * dims.head_dim


def ffn_macs(dims: EncoderDims, tokens: float) -> float:
    return 2 * tokens * dims.hidden * dims.intermediate


def encoder_macs(dims: EncoderDims, lengths: Sequence[float]) -> float:
    """MACs of the encoder for one example; ``lengths`` has one entry per layer plus the final length."""
    if len(lengths) != dims.layers + 1:
        raise ValueError(f"need {dims.layers + 1} lengths (one per layer plus the output), got {len(lengths)}")
    return sum(attention_macs(dims, lengths[i]) + ffn_macs(dims, lengths[i + 1]) for i in range(dims.layers))


def classifier_head_macs(dims: EncoderDims, num_labels: int) -> float:
    """Pooler (hidden x hidden on [CLS]) and classifier, per example."""
    return dims.hidden * dims.hidden + dims.hidden * num_labels


def dense_encoder_macs(dims: EncoderDims, tokens: float) -> float:
    return encoder_macs(dims, [tokens] * (dims.layers + 1))
