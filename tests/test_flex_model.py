"""Flexible BERT correctness anchors on tiny random BERTs: slicing, rewiring, grafting, exits, gates, MACs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import BertForSequenceClassification
from transformers.pytorch_utils import prune_linear_layer

from top.data.tasks import GLUE_TASKS
from top.errors import ParamsError
from top.flex.dynamic import dynamic_forward, resolve_exits
from top.flex.grafting import graft, recipient_donor_pairs
from top.flex.importance import Importance, rewire, unit_importance
from top.flex.macs import path_macs, subnet_macs
from top.flex.supernet import FlexibleBertForSequenceClassification, width_units
from top.flex.sweep import DevSplit, majority_class_scores
from top.flex.train import class_weights, distillation_loss
from top.pruning.macs import EncoderDims, classifier_head_macs

from .conftest import flop_counter, tiny_bert_config


def make_models(seed: int = 0) -> tuple[BertForSequenceClassification, FlexibleBertForSequenceClassification]:
    torch.manual_seed(seed)
    reference = BertForSequenceClassification(tiny_bert_config()).eval()
    flexible = FlexibleBertForSequenceClassification(copy.deepcopy(reference.config))
    flexible.load_state_dict(reference.state_dict(), strict=False)
    return reference, flexible.eval()


def batch(lengths: list[int], seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    input_ids = torch.randint(5, 120, (len(lengths), longest), generator=generator)
    attention_mask = (torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]).long()
    return {
        "input_ids": input_ids * attention_mask,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros_like(input_ids),
    }


def test_full_width_and_depth_equal_hugging_face():
    reference, flexible = make_models()
    inputs = batch([9, 5, 7])
    torch.testing.assert_close(flexible(**inputs).logits, reference(**inputs).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("width", [0.25, 0.5, 0.75])
def test_width_equals_physically_pruned_hugging_face(width):
    reference, flexible = make_models()
    config = reference.config
    heads, neurons = width_units(config, width)
    size = config.hidden_size // config.num_attention_heads
    kept_rows, kept_neurons = torch.arange(heads * size), torch.arange(neurons)
    # Hugging Face's own pruning primitive (transformers 5 dropped model.prune_heads; this is what it used).
    for layer in reference.bert.encoder.layer:
        attention = layer.attention.self
        for name in ("query", "key", "value"):
            setattr(attention, name, prune_linear_layer(getattr(attention, name), kept_rows, dim=0))
        layer.attention.output.dense = prune_linear_layer(layer.attention.output.dense, kept_rows, dim=1)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, kept_neurons, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, kept_neurons, dim=1)
    inputs = batch([8, 6])
    torch.testing.assert_close(flexible(**inputs, width=width).logits, reference(**inputs).logits, atol=1e-5, rtol=1e-5)


def test_rewiring_preserves_the_function_and_sorts_units():
    _, flexible = make_models()
    inputs = batch([9, 4, 6])
    before = flexible(**inputs).logits
    labeled = [inputs | {"labels": torch.tensor([0, 2, 1])}]
    importance = unit_importance(flexible, labeled, regression=False)
    assert importance.heads.shape == (4, 4) and (importance.heads > 0).all()
    assert all(parameter.grad is None for parameter in flexible.parameters())  # nothing leaks into training
    rewire(flexible, importance)
    torch.testing.assert_close(flexible(**inputs).logits, before, atol=1e-5, rtol=1e-5)
    after = unit_importance(flexible, labeled, regression=False)
    assert (after.heads.diff(dim=1) <= 1e-6).all()  # descending importance after rewiring
    assert (after.neurons.diff(dim=1) <= 1e-6).all()


def test_grafting_blends_recipients_with_donors_and_leaves_donors_alone():
    _, flexible = make_models()
    config = flexible.config
    importance = Importance(heads=torch.rand(4, 4), neurons=torch.rand(4, 96))
    untouched = copy.deepcopy(flexible)
    graft(flexible, importance, alpha=0.0)
    for a, b in zip(flexible.parameters(), untouched.parameters(), strict=True):
        assert torch.equal(a, b)
    graft(flexible, importance, alpha=0.3)
    size = config.hidden_size // config.num_attention_heads
    for index in range(config.num_hidden_layers):
        new, old = flexible.bert.encoder.layer[index], untouched.bert.encoder.layer[index]
        recipients, donors = recipient_donor_pairs(importance.heads[index])
        for r, d in zip(recipients.tolist(), donors.tolist(), strict=True):
            rows_r, rows_d = slice(r * size, (r + 1) * size), slice(d * size, (d + 1) * size)
            for name in ("query", "key", "value"):
                new_linear, old_linear = getattr(new.attention.self, name), getattr(old.attention.self, name)
                expected = 0.7 * old_linear.weight[rows_r] + 0.3 * old_linear.weight[rows_d]
                torch.testing.assert_close(new_linear.weight[rows_r], expected)
                torch.testing.assert_close(
                    new_linear.bias[rows_r], 0.7 * old_linear.bias[rows_r] + 0.3 * old_linear.bias[rows_d]
                )
                assert torch.equal(new_linear.weight[rows_d], old_linear.weight[rows_d])
            expected = (
                0.7 * old.attention.output.dense.weight[:, rows_r] + 0.3 * old.attention.output.dense.weight[:, rows_d]
            )
            torch.testing.assert_close(new.attention.output.dense.weight[:, rows_r], expected)
        recipients, donors = recipient_donor_pairs(importance.neurons[index])
        torch.testing.assert_close(
            new.intermediate.dense.weight[recipients],
            0.7 * old.intermediate.dense.weight[recipients] + 0.3 * old.intermediate.dense.weight[donors],
        )
        torch.testing.assert_close(
            new.output.dense.weight[:, recipients],
            0.7 * old.output.dense.weight[:, recipients] + 0.3 * old.output.dense.weight[:, donors],
        )
        assert torch.equal(new.intermediate.dense.weight[donors], old.intermediate.dense.weight[donors])
        assert torch.equal(new.output.dense.bias, old.output.dense.bias)


def test_pairs_weakest_with_strongest():
    recipients, donors = recipient_donor_pairs(torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.2]))
    assert recipients.tolist() == [1, 5, 3] and donors.tolist() == [2, 4, 0]


def dynamic_model(width: float, pooling: str = "cls") -> FlexibleBertForSequenceClassification:
    _, flexible = make_models()
    flexible.config.flex_prefix_pooling = pooling
    flexible.attach_gates([0.25, 0.5, 0.75, 1.0])
    flexible.attach_ramps([2, 3])
    flexible.eval()
    return flexible


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_exit_at_a_ramp_equals_the_static_subnet_of_that_depth(pooling):
    flexible = dynamic_model(0.5, pooling)
    inputs = batch([7, 9, 5])
    trace = dynamic_forward(
        flexible, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], [0.5] * 4, 1e9
    )
    assert trace.exit_depth.tolist() == [2, 2, 2]
    static = flexible(**inputs, width=0.5, depth=2).logits
    torch.testing.assert_close(trace.logits, static, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_dynamic_batch_routes_each_example_as_alone_and_thresholds_resolve_offline(pooling):
    flexible = dynamic_model(1.0, pooling)
    with torch.no_grad():  # make the gates disagree across examples
        for gate in flexible.gates:
            gate.out.weight.normal_(0, 3.0)
    inputs = batch([9, 3, 6, 8], seed=4)
    width_map = [0.25, 0.5, 0.75, 1.0]
    never = dynamic_forward(
        flexible, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], width_map, 0.0
    )
    assert len(never.widths.unique()) > 1
    threshold = float(
        never.ramp_logits[2].log_softmax(-1).exp().mul(-never.ramp_logits[2].log_softmax(-1)).sum(-1).median()
    )
    live = dynamic_forward(
        flexible, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], width_map, threshold
    )
    offline = resolve_exits(never, threshold)
    torch.testing.assert_close(live.logits, offline.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(live.exit_depth, offline.exit_depth)
    for row, length in enumerate([9, 3, 6, 8]):
        alone = {name: tensor[row : row + 1, :length] for name, tensor in inputs.items()}
        single = dynamic_forward(
            flexible, alone["input_ids"], alone["attention_mask"], alone["token_type_ids"], width_map, threshold
        )
        torch.testing.assert_close(single.logits[0], live.logits[row], atol=1e-5, rtol=1e-5)
        assert torch.equal(single.widths[0], live.widths[row])


@pytest.mark.parametrize(("width", "depth", "length"), [(1.0, 4, 11), (0.5, 3, 7), (0.25, 2, 16)])
def test_subnet_macs_equal_a_measured_count(width, depth, length):
    _, flexible = make_models()
    inputs = batch([length])
    with flop_counter() as counter:
        flexible(**inputs, width=width, depth=depth)
    head = classifier_head_macs(EncoderDims.from_config(flexible.config), flexible.config.num_labels)
    assert counter.get_total_flops() == 2 * (subnet_macs(flexible.config, length, [width] * depth) + head)


def test_dynamic_path_macs_equal_a_measured_count():
    flexible = dynamic_model(1.0)
    with torch.no_grad():
        for gate in flexible.gates:
            gate.out.weight.normal_(0, 3.0)
    inputs = batch([10])
    with flop_counter() as counter:
        trace = dynamic_forward(
            flexible,
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["token_type_ids"],
            [0.25, 0.5, 0.75, 1.0],
            0.0,
        )
    config = flexible.config
    head = classifier_head_macs(EncoderDims.from_config(config), config.num_labels)
    expected = path_macs(config, 10, trace.widths[0].tolist(), gates=4, ramps_passed=2) + head
    assert counter.get_total_flops() == 2 * expected


def test_class_weights_and_distillation_loss():
    weights = class_weights(torch.tensor([0, 0, 0, 1, 3, 3]), 4)
    torch.testing.assert_close(weights, torch.tensor([6 / 12, 6 / 4, 0.0, 6 / 8]))
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    states = [torch.ones(1, 3, 4)] * 3
    mask = torch.ones(1, 3, dtype=torch.long)
    same = distillation_loss(logits, states, logits, states, mask, 1.0, regression=False)
    entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum()
    torch.testing.assert_close(same, entropy)  # soft CE of identical logits is their entropy; hidden MSE 0


def test_a_prefix_reads_the_mean_of_its_real_tokens_and_the_full_depth_reads_cls():
    _, flexible = make_models()
    flexible.config.flex_prefix_pooling = "mean"
    inputs = batch([6, 4])
    padded = {name: torch.cat([tensor, torch.zeros_like(tensor[:, :3])], dim=1) for name, tensor in inputs.items()}
    for depth in (2, 4):  # padding changes nothing
        torch.testing.assert_close(
            flexible(**padded, depth=depth).logits, flexible(**inputs, depth=depth).logits, atol=1e-5, rtol=1e-5
        )
    states = flexible(**inputs, output_hidden_states=True).hidden_states
    live = inputs["attention_mask"][:, :, None].float()
    pooler = flexible.bert.pooler
    expected = flexible.classifier(pooler.activation(pooler.dense((states[2] * live).sum(1) / live.sum(1))))
    torch.testing.assert_close(flexible(**inputs, depth=2).logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flexible(**inputs).logits, flexible.final_head(states[4]), atol=1e-5, rtol=1e-5)


def test_bad_widths_depths_and_exits_are_clear_errors():
    _, flexible = make_models()
    inputs = batch([5])
    with pytest.raises(ParamsError, match=r"width 1\.5"):
        flexible(**inputs, width=1.5)
    with pytest.raises(ParamsError, match="depth 7"):
        flexible(**inputs, depth=7)
    with pytest.raises(ParamsError, match="exit layer 4"):
        flexible.attach_ramps([4])
    config = copy.deepcopy(flexible.config)
    config.flex_prefix_pooling = "max"
    with pytest.raises(ParamsError, match="prefix pooling 'max'"):
        FlexibleBertForSequenceClassification(config)


def test_the_majority_class_floor_is_the_score_of_always_answering_the_commonest_training_label():
    spec = GLUE_TASKS["mrpc"]
    labels = np.array([1, 1, 0, 1, 0, 1])
    dev = DevSplit(labels=labels, tokens=np.ones(6), select=np.array([0, 1, 2]), report=np.array([3, 4, 5]))
    floor = majority_class_scores(spec, [0, 1, 1, 1], dev)
    # Always 1: precision 4/6 and recall 1 on dev, 2/3 and 1 on the report part.
    assert floor == {"label": 1, "dev": 0.8, "report": 0.8}
    assert majority_class_scores(spec, [0, 0, 1], dev)["dev"] == 0.0
