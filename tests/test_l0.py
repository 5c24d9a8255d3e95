"""Coarse-to-fine masks, expected MACs and the Lagrangian term."""

import math

import pytest
import torch
from transformers import BertForSequenceClassification

from top.params import PruneParams
from top.pruning import hard_concrete
from top.pruning.l0 import (
    LagrangianConstraint,
    PruningMasks,
    expected_macs_ratio,
    keep_ratios_at_budget,
    layer_lengths,
    warmed_up_target,
    warmup_progress,
)
from top.pruning.macs import EncoderDims
from top.pruning.model import TokenPruningBertForSequenceClassification, configure_pruning
from top.pruning.train import multiplier_optimizer

from .conftest import flop_counter, tiny_bert_config


def test_initial_masks_keep_almost_everything():
    masks = PruningMasks(prune_layers=3, bins=10)
    assert masks.bin_log_alpha.max() <= hard_concrete.LOG_ALPHA_MAX
    bin_open = 1 / (1 + math.exp(-(math.log(100) + 1.5986)))
    gate_open = 1 / (1 + math.exp(-(math.log(0.01) + 1.5986)))
    expected = 1 - (1 - bin_open) * gate_open
    assert torch.allclose(masks.expected_keep_ratios(), torch.full((3,), expected), atol=1e-5)
    assert masks.deterministic_keep_ratios() == [1.0, 1.0, 1.0]  # gates start closed


def test_deterministic_ratios_use_gates_and_bins():
    masks = PruningMasks(prune_layers=2, bins=4)
    with torch.no_grad():
        masks.gate_log_alpha.copy_(torch.tensor([4.0, -4.0]))
        masks.bin_log_alpha.copy_(torch.tensor([[4.0, -4.0, 4.0, -4.0], [4.0, 4.0, 4.0, -4.0]]))
    assert masks.deterministic_keep_ratios() == [0.5, 1.0]


def test_sampled_gates_are_binary_with_straight_through_gradient():
    masks = PruningMasks(prune_layers=4, bins=5)
    bins, gates = masks.sample(torch.Generator().manual_seed(0))
    assert set(gates.detach().tolist()) <= {0.0, 1.0}
    (bins.sum() + gates.sum()).backward()
    assert masks.gate_log_alpha.grad is not None and masks.bin_log_alpha.grad is not None


def test_layer_lengths_keep_cls_and_compound_ratios():
    lengths = torch.tensor([21, 11])
    per_layer = layer_lengths(lengths, [1, 3], torch.tensor([0.5, 0.5]), layers=4)
    assert [t.tolist() for t in per_layer] == [[21, 11], [11, 6], [11, 6], [6, 3.5], [6, 3.5]]


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8])
def test_keep_ratios_at_budget_spend_exactly_the_budget_with_the_same_profile(target):
    dims = EncoderDims(hidden=384, heads=12, head_dim=32, intermediate=1536, layers=6)
    lengths, prune_layers, profile = torch.tensor([53, 20, 110, 7]), [2, 3, 4, 5], [0.84, 0.56, 1.0, 0.48]
    scaled = keep_ratios_at_budget(dims, lengths, prune_layers, profile, target)
    achieved = expected_macs_ratio(dims, lengths, prune_layers, torch.tensor(scaled, dtype=torch.float64))
    assert float(achieved) == pytest.approx(target, abs=1e-9)
    assert scaled[2] == 1.0  # a layer the search left unpruned stays unpruned
    powers = [math.log(new) / math.log(old) for new, old in zip(scaled, profile, strict=True) if old < 1.0]
    assert powers == pytest.approx([powers[0]] * len(powers))  # one common power: the profile's shape is kept


def test_keep_ratios_at_budget_return_the_cheapest_point_when_the_target_is_out_of_reach():
    dims = EncoderDims(hidden=384, heads=12, head_dim=32, intermediate=1536, layers=6)
    lengths = torch.tensor([53, 20])
    scaled = keep_ratios_at_budget(dims, lengths, [5], [0.5], 0.01)  # only the last layer prunes
    floor = expected_macs_ratio(dims, lengths, [5], torch.tensor([0.0], dtype=torch.float64))
    assert scaled[0] < 1e-12
    assert float(expected_macs_ratio(dims, lengths, [5], torch.tensor(scaled))) == pytest.approx(float(floor))


def test_expected_ratio_matches_the_measured_physical_model():
    config = tiny_bert_config(num_labels=2)
    dense = BertForSequenceClassification(config).eval()
    pruned = TokenPruningBertForSequenceClassification(configure_pruning(config, [1, 3], [0.5, 0.5])).eval()
    pruned.load_state_dict(dense.state_dict())
    inputs = torch.randint(3, 50, (1, 21))

    def measured(model):
        with flop_counter() as counter, torch.no_grad():
            model(input_ids=inputs)
        return counter.get_total_flops() / 2

    head = config.hidden_size**2 + config.hidden_size * 2
    measured_ratio = (measured(pruned) - head) / (measured(dense) - head)
    expected = expected_macs_ratio(
        EncoderDims.from_config(config), torch.tensor([21]), [1, 3], torch.tensor([0.5, 0.5], dtype=torch.float64)
    )
    assert expected.item() == pytest.approx(measured_ratio, rel=1e-9)


def test_expected_macs_are_differentiable_in_the_masks():
    masks = PruningMasks(prune_layers=2, bins=4)
    dims = EncoderDims(hidden=32, heads=2, head_dim=16, intermediate=64, layers=4)
    ratio = expected_macs_ratio(dims, torch.tensor([30, 12]), [1, 2], masks.expected_keep_ratios())
    ratio.backward()
    assert masks.gate_log_alpha.grad.abs().sum() > 0


def test_lagrangian_multipliers_ascend():
    constraint = LagrangianConstraint()
    optimizer = torch.optim.SGD(constraint.parameters(), lr=0.1)
    # A first step moves lambda1 upward while the ratio is above target (gap > 0) ...
    constraint(torch.tensor(0.8), target=0.5).backward()
    constraint.ascend_()
    optimizer.step()
    assert constraint.lambda1.item() == pytest.approx(0.1 * 0.3)
    assert constraint.lambda2.item() == pytest.approx(0.1 * 0.09)
    # ... so that the penalty on the model side grows with the gap.
    assert constraint(torch.tensor(0.8), 0.5) > constraint(torch.tensor(0.6), 0.5)


def ascend(constraint, optimizer, macs_ratio, target):
    """One multiplier step at ``macs_ratio``; returns the pull on the ratio (d loss / d ratio) before the step."""
    ratio = torch.tensor(macs_ratio, requires_grad=True)
    optimizer.zero_grad()
    constraint(ratio, target).backward()
    constraint.ascend_()
    optimizer.step()
    return ratio.grad.item()


def test_the_penalty_pulls_in_proportion_to_the_gap_and_error_scaled_steps_follow_the_gap():
    constraint = LagrangianConstraint(penalty=100.0)
    optimizer = multiplier_optimizer(
        constraint, PruneParams(multiplier_update="error_scaled", multiplier_learning_rate=2.0)
    )
    assert isinstance(optimizer, torch.optim.SGD)
    # With the multipliers at 0 the pull is the penalty's alone: penalty * gap.
    assert ascend(constraint, optimizer, 0.6, 0.5) == pytest.approx(100.0 * 0.1)
    assert constraint.lambda1.item() == pytest.approx(2.0 * 0.1)
    # A gap half as wide moves lambda1 half as far; under the target it moves back.
    ascend(constraint, optimizer, 0.55, 0.5)
    assert constraint.lambda1.item() == pytest.approx(2.0 * 0.1 + 2.0 * 0.05)
    ascend(constraint, optimizer, 0.4, 0.5)
    assert constraint.lambda1.item() == pytest.approx(2.0 * 0.05)


def test_adam_multipliers_step_about_the_learning_rate_whatever_the_gap():
    steps = []
    for gap in (0.3, 0.003):
        constraint = LagrangianConstraint()
        ascend(
            constraint,
            multiplier_optimizer(constraint, PruneParams(multiplier_update="adam", multiplier_learning_rate=0.1)),
            0.5 + gap,
            0.5,
        )
        steps.append(constraint.lambda1.item())
    assert steps == pytest.approx([0.1, 0.1], rel=1e-3)


def test_warmup_schedule():
    assert warmed_up_target(0.3, warmup_progress(0, warmup_steps=100)) == 1.0
    assert warmed_up_target(0.3, warmup_progress(50, warmup_steps=100)) == pytest.approx(0.65)
    assert warmed_up_target(0.3, warmup_progress(500, warmup_steps=100)) == pytest.approx(0.3)
    assert warmup_progress(7, warmup_steps=0) == 1.0


def test_forced_on_gates_always_prune_and_learn_only_bins():
    masks = PruningMasks(2, 4, gates_forced_on=True)
    _, gates = masks.sample()
    assert gates.tolist() == [1.0, 1.0] and not masks.gate_log_alpha.requires_grad
    with torch.no_grad():
        masks.bin_log_alpha[0, :2] = hard_concrete.LOG_ALPHA_MIN
    assert masks.deterministic_keep_ratios() == [0.5, 1.0]
    expected = masks.expected_keep_ratios()
    bin_open = hard_concrete.prob_nonzero(masks.bin_log_alpha).mean(dim=1)
    assert torch.allclose(expected, bin_open)
