"""Coarse-to-fine L0 masks of ToP and the expected-MACs constraint they are trained under.

Coarse: one hard-concrete gate per prune layer (does this layer prune at all?). Fine: per prune layer, one
hard-concrete mask per rank bin (a token falls into bin ``floor(rank / alive * bins)``). The expected keep
ratio of a prune layer is ``q = 1 - (1 - mean_b P(bin_b != 0)) * P(gate != 0)``; expected MACs follow from the
cumulative keep ratios and each example's real length, through the same MACs model as the deployed model.
"""

from __future__ import annotations

import torch
from torch import nn

from top.pruning import hard_concrete
from top.pruning.macs import EncoderDims, encoder_macs

# Authors' initialisation: bins start open, gates start closed (clamped to the log_alpha range right away).
BIN_INIT_MEAN = 10.0
GATE_INIT_MEAN = -10.0
INIT_STD = 0.01
# keep_ratios_at_budget: q ** 64 is 0 in practice for any q < 0.6; 60 halvings pin the power to float precision.
MAX_BUDGET_POWER = 64.0
BISECTION_STEPS = 60


class PruningMasks(nn.Module):
    """The learnable masks of ``prune_layers`` prune layers with ``bins`` rank bins each.

    ``gates_forced_on`` is the ablation without the coarse level: every layer prunes, only bins are learned.
    """

    def __init__(self, prune_layers: int, bins: int, gates_forced_on: bool = False) -> None:
        super().__init__()
        if prune_layers < 1 or bins < 1:
            raise ValueError("need at least one prune layer and one bin")
        self.gates_forced_on = gates_forced_on
        self.bin_log_alpha = nn.Parameter(torch.normal(BIN_INIT_MEAN, INIT_STD, (prune_layers, bins)))
        gate_init = hard_concrete.LOG_ALPHA_MAX if gates_forced_on else GATE_INIT_MEAN
        self.gate_log_alpha = nn.Parameter(
            torch.normal(gate_init, INIT_STD, (prune_layers,)), requires_grad=not gates_forced_on
        )
        self.clamp_()

    def clamp_(self) -> None:
        hard_concrete.clamp_(self.bin_log_alpha)
        hard_concrete.clamp_(self.gate_log_alpha)

    def sample(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training draw: continuous bin masks [P, bins] and straight-through binary gates [P]."""
        bins = hard_concrete.sample(self.bin_log_alpha, generator)
        if self.gates_forced_on:
            return bins, torch.ones_like(self.gate_log_alpha)
        gates = hard_concrete.sample(self.gate_log_alpha, generator)
        binary = (gates > 0).to(gates.dtype)
        return bins, gates + (binary - gates).detach()

    def expected_keep_ratios(self) -> torch.Tensor:
        """q per prune layer, differentiable in every log_alpha."""
        bin_open = hard_concrete.prob_nonzero(self.bin_log_alpha).mean(dim=1)
        if self.gates_forced_on:
            return bin_open
        return 1.0 - (1.0 - bin_open) * hard_concrete.prob_nonzero(self.gate_log_alpha)

    def deterministic_keep_ratios(self) -> list[float]:
        """Deployment keep ratio per prune layer: kept bins / bins when the gate is on, else 1."""
        ratios = []
        for bin_alpha, gate_alpha in zip(self.bin_log_alpha, self.gate_log_alpha, strict=True):
            gate_on = self.gates_forced_on or bool(hard_concrete.deterministic_gate(gate_alpha))
            kept_bins = float(hard_concrete.deterministic_bins(bin_alpha).sum())
            ratios.append(kept_bins / bin_alpha.numel() if gate_on else 1.0)
        return ratios


def layer_lengths(
    lengths: torch.Tensor,
    prune_layers: list[int],
    keep_ratios: torch.Tensor,
    layers: int,
    fixed: torch.Tensor | int = 1,
) -> list[torch.Tensor]:
    """Tokens entering each layer (and after the last) for each example: ``(n - f) * cumulative + f``.

    ``fixed`` (f) counts the tokens no pruning removes: [CLS] alone, or [CLS] and a protected question.
    """
    schedule = dict(zip(prune_layers, keep_ratios, strict=True))
    cumulative = torch.ones((), dtype=keep_ratios.dtype, device=keep_ratios.device)
    lengths = lengths.to(keep_ratios.dtype)
    fixed = torch.as_tensor(fixed, dtype=keep_ratios.dtype, device=keep_ratios.device)
    per_layer = [lengths]
    for layer in range(1, layers + 1):
        if layer in schedule:
            cumulative = cumulative * schedule[layer]
        per_layer.append((lengths - fixed) * cumulative + fixed)
    return per_layer


def expected_macs_ratio(
    dims: EncoderDims,
    lengths: torch.Tensor,
    prune_layers: list[int],
    keep_ratios: torch.Tensor,
    fixed: torch.Tensor | int = 1,
) -> torch.Tensor:
    """Mean over the batch of pruned / dense encoder MACs, each example at its own unpadded length."""
    per_layer = layer_lengths(lengths, prune_layers, keep_ratios, dims.layers, fixed)
    pruned = encoder_macs(dims, per_layer)
    dense = encoder_macs(dims, [lengths.to(keep_ratios.dtype)] * (dims.layers + 1))
    return (pruned / dense).mean()


def keep_ratios_at_budget(
    dims: EncoderDims,
    lengths: torch.Tensor,
    prune_layers: list[int],
    keep_ratios: list[float],
    target: float,
    fixed: torch.Tensor | int = 1,
) -> list[float]:
    """``q ** s`` for the power s whose expected MACs ratio on ``lengths`` is ``target`` (bisection).

    Why: the search's deterministic keep ratios land wherever the multipliers took them, often a few points
    under the target. A common power keeps what the search learned (which layers prune, and how hard
    relative to each other; a layer at 1.0 stays at 1.0) and spends exactly the budget. A target below what
    the profile can reach returns its cheapest point.
    """
    profile = torch.tensor(keep_ratios, dtype=torch.float64)

    def ratio(power: float) -> float:
        return float(expected_macs_ratio(dims, lengths, prune_layers, profile**power, fixed))

    low, high = 0.0, 1.0
    while ratio(high) > target and high < MAX_BUDGET_POWER:
        low, high = high, 2 * high
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if ratio(middle) > target else (low, middle)
    return (profile**high).tolist()


class LagrangianConstraint(nn.Module):
    """``lambda1 * (r - t) + lambda2 * (r - t)^2`` on the expected MACs ratio r; lambdas trained by ascent.

    The multipliers are ordinary parameters; the training loop maximises over them by negating their
    gradients (``ascend_``) before its optimizer step, rather than relying on a negative learning rate.
    ``penalty`` adds a fixed ``penalty / 2 * (r - t)^2`` (the augmented Lagrangian's term): a pull on the masks
    proportional to the gap, which does not keep pulling once the gap closes as a wound-up multiplier does.
    """

    def __init__(self, penalty: float = 0.0) -> None:
        super().__init__()
        self.penalty = penalty
        self.lambda1 = nn.Parameter(torch.zeros(()))
        self.lambda2 = nn.Parameter(torch.zeros(()))

    def forward(self, macs_ratio: torch.Tensor, target: float) -> torch.Tensor:
        gap = macs_ratio - target
        return self.lambda1 * gap + (self.lambda2 + self.penalty / 2) * gap * gap

    def ascend_(self) -> None:
        for parameter in (self.lambda1, self.lambda2):
            if parameter.grad is not None:
                parameter.grad.neg_()


def warmup_progress(step: int, warmup_steps: int) -> float:
    """How far the search is through its warm-up, from 0 to 1; the MACs target and the ranking weight follow it."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def warmed_up_target(final_target: float, progress: float) -> float:
    """The MACs target moves linearly from 1.0 (dense) to ``final_target`` as the warm-up ``progress`` goes 0 to 1."""
    return 1.0 - (1.0 - final_target) * progress
