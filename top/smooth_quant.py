"""SmoothQuant (Xiao et al., ICML 2023): move activation outliers into the weights before static INT8.

BERT's LayerNorm outputs carry a few outlier channels whose range is many times the typical channel's
(``python -m studies.int8_calibration`` records every linear's). A per-tensor INT8 range then either spends its
256 levels on that channel (minmax) or clips it (KL). For a linear layer ``y = x W^T + b`` and a per-input-channel
scale ``s``, ``y = (x / s) (W s)^T + b`` exactly; with ``s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha)`` the scaled
activation's channels have comparable ranges and the weight (quantized per output channel) absorbs the
difference. The division is one elementwise multiply per input element, ``1 / out_features`` of the linear's MACs.
It did not help the MRPC ToP model's INT8 agreement with FP32 (``python -m studies.int8_calibration`` compares
it on and off), so the quantize stage leaves it off by default.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

# Floor for channel maxima: a channel that is always zero (or a zero weight column) must not give a zero scale.
_EPSILON = 1e-5


class SmoothedLinear(nn.Module):
    """``linear`` computed as ``(x * inverse_scale) @ (W * scale)^T + b``: the same function, smoother input."""

    def __init__(self, linear: nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inverse_scale", (1.0 / scale).to(linear.weight.dtype))
        self.linear = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(linear.weight * scale[None, :])
            if linear.bias is not None:
                self.linear.bias.copy_(linear.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs * self.inverse_scale)


def smoothing_scale(activation_max: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per input channel: ``max|x_j|^alpha / max|W_:,j|^(1-alpha)`` (alpha 0.5 splits the range evenly)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smoothing alpha must be in [0, 1], got {alpha}")
    weight_max = weight.detach().abs().amax(dim=0).clamp(min=_EPSILON)
    return activation_max.clamp(min=_EPSILON).pow(alpha) / weight_max.pow(1.0 - alpha)


def linears(module: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    """Every ``nn.Linear`` inside ``module``, with its qualified name."""
    for name, child in module.named_modules():
        if isinstance(child, nn.Linear):
            yield name, child


def record_input_maxima(modules: Iterable[nn.Module], run: Callable[[], Any]) -> list[dict[str, torch.Tensor]]:
    """Per module, each inner linear's per-channel max |input| over whatever ``run`` feeds through them."""
    maxima: list[dict[str, torch.Tensor]] = []
    handles = []

    def recorder(store: dict[str, torch.Tensor], name: str) -> Callable[..., None]:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            observed = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0)
            store[name] = torch.maximum(store[name], observed) if name in store else observed

        return record

    for module in modules:
        store: dict[str, torch.Tensor] = {}
        maxima.append(store)
        handles += [linear.register_forward_pre_hook(recorder(store, name)) for name, linear in linears(module)]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def smoothed_copy(module: nn.Module, input_maxima: dict[str, torch.Tensor], alpha: float) -> nn.Module:
    """A copy of ``module`` whose linears are ``SmoothedLinear`` (``module`` itself is left untouched)."""
    smoothed = copy.deepcopy(module)
    for name, linear in list(linears(smoothed)):
        if name not in input_maxima:
            raise ValueError(f"no calibration input reached linear {name!r}: cannot compute its smoothing scale")
        replacement = SmoothedLinear(linear, smoothing_scale(input_maxima[name], linear.weight, alpha))
        if not name:  # the module is itself a linear
            return replacement
        smoothed.set_submodule(name, replacement)
    return smoothed
