"""The token-pruning QA model: Hugging Face equivalence, forwarded states, physical == masked, question protection
and ranking by the question."""

import pytest
import torch
from transformers import BertForQuestionAnswering

from top.errors import ParamsError
from top.pruning.model import TokenPruningBertForQuestionAnswering, configure_pruning, select_tokens

from .conftest import tiny_bert_config
from .test_token_pruning_model import mixed_batch


def tiny_config(prune_layers=(), keep_ratios=(), protect_question=False, rank_by_question=False):
    config = tiny_bert_config(initializer_range=0.2, num_labels=2)
    config = configure_pruning(config, list(prune_layers), list(keep_ratios))
    config.protect_question, config.rank_by_question = protect_question, rank_by_question
    return config


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return BertForQuestionAnswering(tiny_config()).eval()


def pruned_copy(reference, prune_layers=(), keep_ratios=(), protect_question=False, rank_by_question=False):
    config = tiny_config(prune_layers, keep_ratios, protect_question, rank_by_question)
    model = TokenPruningBertForQuestionAnswering(config).eval()
    model.load_state_dict(reference.state_dict())
    return model


def live_logits(output, attention_mask):
    """Start and end logits at the real (unpadded) positions, where a head's output means anything."""
    live = attention_mask.bool()
    return torch.stack([output.start_logits[live], output.end_logits[live]])


@pytest.mark.parametrize(("prune_layers", "keep_ratios"), [([], []), ([1, 3], [1.0, 1.0])])
def test_no_pruning_equals_hugging_face(reference, prune_layers, keep_ratios):
    model = pruned_copy(reference, prune_layers, keep_ratios)
    batch = mixed_batch()
    with torch.no_grad():
        expected = live_logits(reference(**batch), batch["attention_mask"])
        for mode in ("physical", "masked"):
            got = live_logits(model(**batch, mode=mode), batch["attention_mask"])
            assert torch.allclose(got, expected, atol=1e-5, rtol=0), mode


@pytest.mark.parametrize(("protect_question", "rank_by_question"), [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize(("prune_layers", "keep_ratios"), [([2], [0.5]), ([1, 2, 3], [0.7, 0.6, 0.4])])
def test_physical_removal_equals_masked_evaluation(
    reference, prune_layers, keep_ratios, protect_question, rank_by_question
):
    model = pruned_copy(reference, prune_layers, keep_ratios, protect_question, rank_by_question)
    batch = mixed_batch()
    with torch.no_grad():
        physical, masked = model(**batch, mode="physical"), model(**batch, mode="masked")
        dense = live_logits(reference(**batch), batch["attention_mask"])
    assert torch.equal(physical.token_counts, masked.token_counts)
    assert physical.token_counts[:, -1].sum() < physical.token_counts[:, 0].sum()  # tokens really went
    got = live_logits(physical, batch["attention_mask"])
    assert torch.allclose(got, live_logits(masked, batch["attention_mask"]), atol=1e-5, rtol=0)
    assert not torch.allclose(got, dense, atol=1e-3)  # pruning really changed the answer scores


def test_a_pruned_token_keeps_the_state_it_entered_its_last_layer_with(reference):
    """Pruned before layer 2's FFN means removed during layer index 1: its final state is layer 0's output."""
    model = pruned_copy(reference, [2], [0.5])
    batch = mixed_batch()
    with torch.no_grad():
        dense = reference.bert(**batch, output_hidden_states=True)
        encoded = model.encode(**batch, mode="physical", masks=None, return_scores=False, track_states=True)
        masked = model.encode(**batch, mode="masked", masks=None, return_scores=True, track_states=True)
    live = batch["attention_mask"].bool()
    kept = select_tokens(masked.scores[1], live, 0.5)
    pruned = live & ~kept
    assert pruned.sum() > 0
    assert torch.allclose(encoded.token_states[pruned], dense.hidden_states[1][pruned], atol=1e-5)
    assert not torch.allclose(encoded.token_states[kept], dense.hidden_states[1][kept], atol=1e-3)


def test_question_protection_keeps_every_question_token():
    alive = torch.ones(2, 10, dtype=torch.bool)
    alive[1, 8:] = False
    question = torch.zeros(2, 10, dtype=torch.bool)
    question[:, :4] = True
    scores = torch.where(question, -1.0, torch.arange(10, dtype=torch.float).expand(2, -1))  # question ranks last
    keep = select_tokens(scores, alive, 0.5, question)
    assert keep[:, :4].all()
    assert keep.sum(dim=1).tolist() == [4 + 3, 4 + 2]  # the ratio applies to the 6 and 4 context tokens


@pytest.mark.parametrize("rank_by_question", [False, True])
def test_token_scores_are_the_attention_received_from_the_ranking_rows(reference, rank_by_question):
    """Against Hugging Face's attention probabilities: averaged over heads and the live query rows, which are
    [CLS] and the question (segment 0) when the question ranks the context."""
    model = pruned_copy(reference, protect_question=True, rank_by_question=rank_by_question)
    batch = mixed_batch()
    with torch.no_grad():
        scores = model(**batch, mode="masked", return_scores=True).token_scores
        probs = reference.bert(**batch, output_attentions=True).attentions
    rows = batch["attention_mask"].bool()
    if rank_by_question:
        rows = rows & (batch["token_type_ids"] == 0)
    weights = rows.float() / rows.sum(dim=1, keepdim=True)
    for layer, layer_probs in enumerate(probs):
        expected = torch.einsum("bhqk,bq->bk", layer_probs, weights) / layer_probs.shape[1]
        assert torch.allclose(scores[layer], expected * batch["attention_mask"], atol=1e-6), layer


def test_ranking_by_the_question_prunes_other_tokens(reference):
    """The same weights and schedule keep a different context, so the answer scores change."""
    batch = mixed_batch()
    logits = []
    for rank_by_question in (False, True):
        model = pruned_copy(reference, [2], [0.5], protect_question=True, rank_by_question=rank_by_question)
        with torch.no_grad():
            logits.append(live_logits(model(**batch), batch["attention_mask"]))
    assert not torch.allclose(*logits, atol=1e-4)


def test_ranking_by_the_question_needs_it_protected():
    with pytest.raises(ParamsError, match="rank_by_question needs protect_question"):
        TokenPruningBertForQuestionAnswering(tiny_config(rank_by_question=True))


def test_train_mode_with_every_token_kept_equals_dense(reference):
    model = pruned_copy(reference, [1, 3], [1.0, 1.0])
    batch = mixed_batch()
    masks = (torch.ones(2, 4), torch.zeros(2))  # gates off: every token's keep weight is 1
    with torch.no_grad():
        got = live_logits(model(**batch, mode="train", masks=masks), batch["attention_mask"])
        expected = live_logits(reference(**batch), batch["attention_mask"])
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_train_mode_forwards_states_of_zero_weighted_tokens(reference):
    """A token whose keep weight is 0 ends with its forwarded state, as physical removal would give it."""
    model = pruned_copy(reference, [2], [1.0])
    batch = mixed_batch()
    masks = (torch.zeros(1, 4), torch.ones(1))  # every prunable token's weight is 0: only [CLS] goes on
    with torch.no_grad():
        trained = model.encode(**batch, mode="train", masks=masks, return_scores=False, track_states=True)
        dense = reference.bert(**batch, output_hidden_states=True)
    prunable = batch["attention_mask"].bool().clone()
    prunable[:, 0] = False
    assert torch.allclose(trained.token_states[prunable], dense.hidden_states[1][prunable], atol=1e-5)


def test_save_and_reload_keeps_the_schedule_and_protection(reference, tmp_path):
    model = pruned_copy(reference, [1, 2], [0.6, 0.5], protect_question=True)
    model.save_pretrained(tmp_path)
    loaded = TokenPruningBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert loaded.config.prune_layers == [1, 2] and loaded.config.keep_ratios == [0.6, 0.5]
    assert loaded.config.protect_question is True
    batch = mixed_batch()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).start_logits, model(**batch).start_logits)
