"""Hard-concrete L0 gates (Louizos et al. 2018), as ToP uses them for layer gates and rank-bin masks.

A gate's ``log_alpha`` parameterises a stretched, clamped concrete distribution: training samples a
(mostly binary) value, the expected-cost model uses ``P(z != 0)``, and deployment takes a deterministic
decision. All three live here so that the constants cannot drift apart.
"""

from __future__ import annotations

import math

import torch

STRETCH_LEFT = -0.1
STRETCH_RIGHT = 1.1
TEMPERATURE = 2.0 / 3.0
UNIFORM_EPS = 1e-6
# After every optimizer step log_alpha is clamped to [log 0.01, log 100], as in the authors' recipe.
LOG_ALPHA_MIN = math.log(0.01)
LOG_ALPHA_MAX = math.log(100.0)
# beta * log(-l / r): P(z != 0) = sigmoid(log_alpha - _SHIFT).
_SHIFT = TEMPERATURE * math.log(-STRETCH_LEFT / STRETCH_RIGHT)


def sample(log_alpha: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One reparameterised sample z in [0, 1] per gate; differentiable in ``log_alpha``."""
    uniform = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device, dtype=log_alpha.dtype)
    uniform = uniform.clamp(UNIFORM_EPS, 1.0 - UNIFORM_EPS)
    concrete = torch.sigmoid((torch.log(uniform) - torch.log1p(-uniform) + log_alpha) / TEMPERATURE)
    return (concrete * (STRETCH_RIGHT - STRETCH_LEFT) + STRETCH_LEFT).clamp(0.0, 1.0)


def prob_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z != 0): the expected share of the gate that stays open, used by the expected-MACs constraint."""
    return torch.sigmoid(log_alpha - _SHIFT)


def deterministic_bins(log_alpha: torch.Tensor) -> torch.Tensor:
    """Deployment decision for a vector of bin masks: keep the round(sum P(z != 0)) bins of largest log_alpha.

    The count comes from the expected number of open bins, the choice from the ranking of log_alpha, so the
    kept bins need not be contiguous (ToP's learned masks are not a pure top-k).
    """
    keep_count = int(torch.round(prob_nonzero(log_alpha).sum()).item())
    mask = torch.zeros_like(log_alpha)
    if keep_count > 0:
        mask[torch.topk(log_alpha, keep_count).indices] = 1.0
    return mask


def deterministic_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """Deployment decision for scalar gates: open iff P(z != 0) >= 0.5."""
    return (prob_nonzero(log_alpha) >= 0.5).to(log_alpha.dtype)


def clamp_(log_alpha: torch.Tensor) -> None:
    """Keep log_alpha in the authors' range; call after every optimizer step."""
    with torch.no_grad():
        log_alpha.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX)
