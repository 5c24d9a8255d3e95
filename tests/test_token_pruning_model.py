"""The token-pruning BERT: Hugging Face equivalence, physical == masked, and measured == analytic MACs."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from studies.packing_ablation import UnpackedFeedForward
from top.errors import ParamsError
from top.pruning.macs import EncoderDims, attention_macs, classifier_head_macs, encoder_macs, ffn_macs
from top.pruning.model import (
    TokenPruningBertForSequenceClassification,
    attention_with_scores,
    configure_pruning,
    select_tokens,
)

from .conftest import flop_counter, tiny_bert_config


def tiny_config() -> BertConfig:
    # Large enough weights that pruning visibly moves the logits.
    return tiny_bert_config(initializer_range=0.2)


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config()).eval()


def pruned_copy(reference, prune_layers, keep_ratios):
    config = configure_pruning(tiny_config(), prune_layers, keep_ratios)
    model = TokenPruningBertForSequenceClassification(config).eval()
    model.load_state_dict(reference.state_dict())
    return model


def mixed_batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 120, (3, 21), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 14:] = 0
    attention_mask[2, 6:] = 0
    token_type_ids = (torch.arange(21)[None, :] > 9).long().expand(3, -1)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


@pytest.mark.parametrize(("prune_layers", "keep_ratios"), [([], []), ([1, 3], [1.0, 1.0])])
def test_no_pruning_equals_hugging_face(reference, prune_layers, keep_ratios):
    model = pruned_copy(reference, prune_layers, keep_ratios)
    batch = mixed_batch()
    with torch.no_grad():
        expected = reference(**batch).logits
        cls_state = reference.bert(**batch).last_hidden_state[:, 0]
        for mode in ("physical", "masked"):
            output = model(**batch, mode=mode)
            assert torch.allclose(output.logits, expected, atol=1e-5, rtol=0), mode
            assert torch.allclose(output.head_states, cls_state, atol=1e-5, rtol=0), mode


@pytest.mark.parametrize(("prune_layers", "keep_ratios"), [([1], [0.5]), ([1, 2, 3], [0.7, 0.6, 0.4])])
def test_physical_removal_equals_masked_evaluation(reference, prune_layers, keep_ratios):
    model = pruned_copy(reference, prune_layers, keep_ratios)
    batch = mixed_batch()
    with torch.no_grad():
        physical = model(**batch, mode="physical")
        masked = model(**batch, mode="masked")
        dense = reference(**batch).logits
    assert torch.allclose(physical.logits, masked.logits, atol=1e-5, rtol=0)
    assert torch.equal(physical.token_counts, masked.token_counts)
    assert (physical.logits - dense).abs().max() > 1e-2  # pruning really changed the result
    assert (physical.token_counts[:, -1] < physical.token_counts[:, 0]).all()


@pytest.mark.parametrize("length", [9, 24, 57])
@pytest.mark.parametrize("keep_ratios", [[0.5, 0.8], [0.3, 0.3]])
def test_measured_macs_equal_analytic_on_the_pruned_forward(reference, length, keep_ratios):
    model = pruned_copy(reference, [1, 3], keep_ratios)
    input_ids = torch.randint(5, 120, (1, length), generator=torch.Generator().manual_seed(length))
    with flop_counter() as counter, torch.no_grad():
        output = model(input_ids=input_ids)
    lengths = output.token_counts[0].tolist()
    dims = EncoderDims.from_config(model.config)
    assert counter.get_total_flops() / 2 == encoder_macs(dims, lengths) + classifier_head_macs(dims, 3)
    assert lengths[0] == length and lengths[-1] < length


def test_a_mixed_batch_pays_ffn_macs_for_live_tokens_only(reference):
    """After a prune the batch is padded to its longest survivor: attention runs on that padded length, but the
    FFN on the live tokens alone (packed), so its measured MACs are those of each example's real count."""
    model = pruned_copy(reference, [1, 3], [0.5, 0.8])
    batch = mixed_batch()
    with torch.no_grad(), flop_counter() as counter:
        output = model(**batch)
    counts = output.token_counts
    dims = EncoderDims.from_config(model.config)
    rows = counts.shape[0]
    expected = sum(
        rows * attention_macs(dims, int(counts[:, layer].max())) + ffn_macs(dims, int(counts[:, layer + 1].sum()))
        for layer in range(dims.layers)
    )
    assert counter.get_total_flops() / 2 == expected + rows * classifier_head_macs(dims, 3)
    assert len(set(counts[:, -1].tolist())) > 1  # the examples really kept different counts


def test_the_packing_ablation_compares_equal_functions(reference):
    """`studies.packing_ablation` times the model with each FFN on the padded batch: same logits, more MACs."""
    packed = pruned_copy(reference, [1, 3], [0.5, 0.8])
    unpacked = UnpackedFeedForward(packed.config).eval()
    unpacked.load_state_dict(packed.state_dict())
    batch = mixed_batch()
    with torch.no_grad():
        with flop_counter() as packed_count:
            expected = packed(**batch)
        with flop_counter() as unpacked_count:
            output = unpacked(**batch)
    assert torch.allclose(output.logits, expected.logits, atol=1e-5, rtol=0)
    assert torch.equal(output.token_counts, expected.token_counts)
    assert unpacked_count.get_total_flops() > packed_count.get_total_flops()


def test_a_pruning_model_drops_the_padding_before_the_first_layer(reference):
    """ToP counts MACs at real lengths; the physical forward must cost that on a padded input too, while a dense
    model (no prune layers) keeps paying for the padding, as Hugging Face's does (the benchmark's baseline)."""
    model = pruned_copy(reference, [1, 3], [0.5, 0.8])
    input_ids = torch.randint(5, 120, (1, 15), generator=torch.Generator().manual_seed(3))
    padded = {
        "input_ids": torch.cat([input_ids, torch.zeros(1, 25, dtype=torch.long)], dim=1),
        "attention_mask": (torch.arange(40) < 15).long()[None, :],
    }
    dims = EncoderDims.from_config(model.config)
    with torch.no_grad():
        plain = model(input_ids=input_ids)
        with flop_counter() as counter:
            output = model(**padded)
        with flop_counter() as dense_counter:
            dense = pruned_copy(reference, [], [])(**padded)
    assert torch.allclose(output.logits, plain.logits, atol=1e-5, rtol=0)
    assert torch.equal(output.token_counts, plain.token_counts)
    lengths = plain.token_counts[0].tolist()
    assert counter.get_total_flops() / 2 == encoder_macs(dims, lengths) + classifier_head_macs(dims, 3)
    assert dense_counter.get_total_flops() / 2 == encoder_macs(dims, [40] * 5) + classifier_head_macs(dims, 3)
    assert torch.allclose(dense.logits, reference(input_ids=input_ids).logits, atol=1e-5, rtol=0)


def test_keep_counts_follow_each_examples_length():
    scores = torch.tensor([[9.0, 0.1, 0.9, 0.5, 0.7, 0.2], [9.0, 0.3, 0.2, 0.1, 0.0, 0.0]])
    alive = torch.tensor([[True] * 6, [True, True, True, True, False, False]])
    keep = select_tokens(scores, alive, keep_ratio=0.6)
    assert keep[0].tolist() == [True, False, True, True, True, False]  # CLS + best 3 of 5
    assert keep[1].tolist() == [True, True, True, False, False, False]  # CLS + best 2 of 3


def test_save_and_reload_keeps_the_schedule(reference, tmp_path):
    model = pruned_copy(reference, [2], [0.5])
    model.save_pretrained(tmp_path)
    loaded = TokenPruningBertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.prune_layers == [2] and loaded.config.keep_ratios == [0.5]
    batch = mixed_batch()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


@pytest.mark.parametrize(
    ("prune_layers", "keep_ratios", "message"),
    [
        ([4], [0.5], "prune layer 4 is outside the model"),
        ([0], [0.5], "prune layer 0 is outside"),
        ([1], [-0.1], r"keep ratio -0.1 must be in \[0, 1\]"),
        ([1], [1.5], "keep ratio 1.5"),
        ([1, 2], [0.5], "2 prune layers but 1 keep ratios"),
    ],
)
def test_bad_schedules_are_rejected(prune_layers, keep_ratios, message):
    with pytest.raises(ParamsError, match=message):
        configure_pruning(tiny_config(), prune_layers, keep_ratios)


def test_train_mode_with_open_masks_equals_hugging_face(reference):
    model = pruned_copy(reference, [1, 3], [1.0, 1.0])
    batch = mixed_batch()
    with torch.no_grad():
        expected = reference(**batch).logits
        for gate in (0.0, 1.0):
            masks = (torch.ones(2, 5), torch.full((2,), gate))
            assert torch.allclose(model(**batch, mode="train", masks=masks).logits, expected, atol=1e-5, rtol=0)


def test_train_mode_bins_drop_the_lower_ranks_and_pass_gradients(reference):
    model = pruned_copy(reference, [1], [1.0])
    batch = mixed_batch()
    bin_masks = torch.tensor([1.0, 0.0], requires_grad=True)  # keep the better-ranked half
    gates = torch.ones(1, requires_grad=True)
    output = model(**batch, mode="train", masks=(bin_masks[None, :], gates), return_scores=True)
    live = batch["attention_mask"].sum(dim=1) - 1
    assert output.token_counts[:, 1].tolist() == (1 + (live + 1) // 2).tolist()
    assert len(output.token_scores) == 4 and output.token_scores[0].shape == (3, 21)
    output.logits.sum().backward()
    assert bin_masks.grad.abs().sum() > 0 and gates.grad.abs().sum() > 0


def test_fused_attention_changes_no_logit_score_or_gradient(reference):
    """Training asks for the distilled layers' scores only: the other layers run fused attention, and the layers
    that rank tokens recompute their probabilities without gradient. Logits, returned scores and every
    gradient must be those of the written-out attention in every layer (return_scores=True)."""
    batch = mixed_batch()
    masks = (torch.tensor([[1.0, 0.3, 0.0]] * 2), torch.ones(2))
    score_weights = torch.randn(3, 21, generator=torch.Generator().manual_seed(2))
    results = []
    for request in (True, [1]):  # prune layers 1 and 3 rank on layers 0 and 2: every kind of layer occurs
        model = pruned_copy(reference, [1, 3], [1.0, 1.0])
        output = model(**batch, mode="train", masks=masks, return_scores=request)
        (output.logits.square().sum() + (output.token_scores[1] * score_weights).sum()).backward()
        results.append((output, {name: weight.grad for name, weight in model.named_parameters()}))
    (written_out, written_grads), (fused, fused_grads) = results
    assert torch.allclose(fused.logits, written_out.logits, atol=1e-5, rtol=0)
    assert torch.allclose(fused.token_scores[1], written_out.token_scores[1], atol=1e-6, rtol=0)
    assert [score is None for score in fused.token_scores] == [True, False, True, True]
    assert fused_grads["bert.encoder.layer.1.attention.self.query.weight"].abs().sum() > 0
    for name, grad in written_grads.items():
        assert (grad is None) == (fused_grads[name] is None), name
        assert grad is None or torch.allclose(fused_grads[name], grad, atol=1e-5, rtol=1e-4), name


def test_grouped_attention_equals_the_batched_masked_softmax():
    """The written-out attention runs in groups of examples, each cut to its longest; it must give the padded
    batch's masked softmax: the same context in every live key's row, and scores averaged over the live query
    rows, for keys with holes (masked evaluation) and rows a subset of the keys (train mode's zero-weighted
    tokens), whether the examples share a group or not."""
    generator = torch.Generator().manual_seed(3)
    query, key, value = (torch.randn(3, 4, 9, 5, generator=generator) for _ in range(3))
    keys = torch.ones(3, 9, dtype=torch.bool)
    keys[1, 6:] = False
    keys[2, [2, 3, 7]] = False
    rows = keys.clone()
    rows[0, [4, 5]] = False
    logits = query @ key.transpose(-1, -2) / 5**0.5
    probs = logits.masked_fill(~keys[:, None, None, :], float("-inf")).softmax(dim=-1)
    expected_scores = (probs * rows[:, None, :, None]).sum(dim=(1, 2)) / (rows.sum(dim=1, keepdim=True) * 4)
    one_a_group = attention_with_scores(query, key, keys, rows, group_elements=4 * 9 * 9)[1]
    assert torch.allclose(one_a_group, expected_scores, atol=1e-7, rtol=0)
    context, scores = attention_with_scores(query, key, keys, rows, value)
    live_rows = keys[:, None, :, None].expand_as(context)
    assert torch.allclose(context[live_rows], (probs @ value)[live_rows], atol=1e-6, rtol=0)
    assert torch.allclose(scores, expected_scores, atol=1e-7, rtol=0)
    assert torch.equal(scores[~keys], torch.zeros_like(scores[~keys]))
    assert torch.equal(attention_with_scores(query, key, keys, rows)[1], scores)


def test_masks_only_in_train_mode(reference):
    model = pruned_copy(reference, [1], [0.5])
    with pytest.raises(ValueError, match="masks are required in 'train' mode"):
        model(**mixed_batch(), mode="train")
