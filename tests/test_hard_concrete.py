"""Hard-concrete formulas against brute-force references."""

import math

import torch

from top.pruning import hard_concrete as hc


def reference_prob_nonzero(log_alpha: float) -> float:
    # P(z > 0) = P(s*(r-l)+l > 0) = P(s > -l/(r-l)), s = sigmoid((logit(u) + log_alpha)/beta).
    threshold = -hc.STRETCH_LEFT / (hc.STRETCH_RIGHT - hc.STRETCH_LEFT)
    logit_threshold = math.log(threshold / (1 - threshold))
    # s > t  <=>  logit(u) > beta*logit(t) - log_alpha, and logit(u) is standard logistic.
    return 1 - 1 / (1 + math.exp(-(hc.TEMPERATURE * logit_threshold - log_alpha)))


def test_prob_nonzero_matches_closed_form_and_monte_carlo():
    generator = torch.Generator().manual_seed(0)
    for value in (-3.0, -0.5, 0.0, 1.0, 4.0):
        log_alpha = torch.full((200_000,), value)
        expected = reference_prob_nonzero(value)
        assert math.isclose(hc.prob_nonzero(torch.tensor(value, dtype=torch.float64)).item(), expected, rel_tol=1e-12)
        empirical = (hc.sample(log_alpha, generator) > 0).float().mean().item()
        assert abs(empirical - expected) < 5e-3


def test_prob_nonzero_constant_from_the_paper():
    # sigmoid(log_alpha - beta*log(-l/r)) = sigmoid(log_alpha + 1.5986)
    assert math.isclose(hc.prob_nonzero(torch.tensor(0.0)).item(), 1 / (1 + math.exp(-1.5986)), rel_tol=1e-4)


def test_samples_are_clamped_and_differentiable():
    log_alpha = torch.zeros(1000, requires_grad=True)
    z = hc.sample(log_alpha, torch.Generator().manual_seed(1))
    assert z.min() >= 0 and z.max() <= 1
    assert ((z == 0) | (z == 1)).float().mean() > 0.1  # the stretch puts real mass on exact 0 and 1
    z.sum().backward()
    assert log_alpha.grad is not None and log_alpha.grad.abs().sum() > 0


def test_deterministic_bins_keep_the_expected_count_by_rank():
    log_alpha = torch.tensor([4.0, -4.0, 3.0, -4.0, 2.5, -4.0])
    expected_count = round(hc.prob_nonzero(log_alpha).sum().item())
    mask = hc.deterministic_bins(log_alpha)
    assert mask.sum().item() == expected_count == 3
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]  # not contiguous: follows log_alpha


def test_deterministic_gate_threshold_and_clamp():
    shift = hc.TEMPERATURE * math.log(-hc.STRETCH_LEFT / hc.STRETCH_RIGHT)
    gates = torch.tensor([shift - 0.01, shift + 0.01])
    assert hc.deterministic_gate(gates).tolist() == [0.0, 1.0]
    log_alpha = torch.tensor([-10.0, 0.0, 10.0])
    hc.clamp_(log_alpha)
    assert torch.allclose(log_alpha, torch.tensor([math.log(0.01), 0.0, math.log(100.0)]))
