"""MACs of static subnets and of per-input dynamic paths, from the model's own config.

Only matrix products are counted (as ``torch.utils.flop_counter`` measures them and as for ToP, see
``top.pruning.macs``). A dynamic path also pays for the width gates it evaluates and for the off-ramps it
checks without exiting; the final pooler and classifier are the same for every model and left out, so ratios
are against the dense encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from transformers import BertConfig

from top.flex.supernet import width_units
from top.pruning.macs import EncoderDims, attention_macs, classifier_head_macs, dense_encoder_macs, ffn_macs


def layer_macs(config: BertConfig, tokens: float, width: float) -> float:
    heads, neurons = width_units(config, width)
    dims = replace(EncoderDims.from_config(config), heads=heads, intermediate=neurons)
    return attention_macs(dims, tokens) + ffn_macs(dims, tokens)


def subnet_macs(config: BertConfig, tokens: float, widths: Sequence[float]) -> float:
    """Encoder MACs of one example running one layer per entry of ``widths`` (a prefix of the layers)."""
    return sum(layer_macs(config, tokens, width) for width in widths)


def gate_macs(config: BertConfig, classes: int) -> float:
    return config.hidden_size * config.hidden_size + config.hidden_size * classes


def path_macs(config: BertConfig, tokens: float, widths: Sequence[float], gates: int, ramps_passed: int) -> float:
    """A dynamic path: its layers, ``gates`` width gates, and ``ramps_passed`` off-ramps checked in vain."""
    classes = len(config.flex_gate_widths)
    ramp = classifier_head_macs(EncoderDims.from_config(config), config.num_labels)
    return subnet_macs(config, tokens, widths) + gates * gate_macs(config, classes) + ramps_passed * ramp


def dense_macs(config: BertConfig, tokens: float) -> float:
    return dense_encoder_macs(EncoderDims.from_config(config), tokens)
