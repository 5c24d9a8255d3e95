"""ToP training end to end on a tiny random BERT: it meets the MACs target and the saved model reloads."""

import pytest
import torch
from transformers import AutoConfig

from top.data.tasks import resolve_task
from top.errors import ParamsError
from top.evaluate import evaluate
from top.params import PruneParams
from top.pruning import train as train_module
from top.pruning.l0 import expected_macs_ratio
from top.pruning.macs import EncoderDims
from top.pruning.model import TokenPruningBertForSequenceClassification, TokenPruningOutput, TokenPruningQAOutput
from top.pruning.train import load_models, selection_rank, train_token_pruning


def test_training_meets_the_target_and_reloads(toy_top):
    params, spec, splits, tokenizer, tmp_path = toy_top
    teacher, student = load_models(tmp_path / "teacher", params.prune)
    model, evaluation, run = train_token_pruning(teacher, student, spec, splits, tokenizer, params.prune, 24)
    assert evaluation.macs_ratio <= params.prune.target_macs + params.prune.macs_tolerance
    assert evaluation.macs_ratio_padded < evaluation.macs_ratio  # toy texts are far shorter than max_length
    assert model.config.keep_ratios[0] < 1.0
    assert run["history"] and run["steps"] == 140
    # The search overshoots the toy's budget; fine-tuning scales its keep ratios back up to the budget, and that
    # in-band model wins the selection.
    searched = [record["macs_ratio"] for record in run["history"] if record["phase"] == "search"]
    finetuned = [record["macs_ratio"] for record in run["history"] if record["phase"] == "finetune"]
    assert min(searched) < params.prune.target_macs - 2 * params.prune.macs_tolerance
    assert finetuned == [evaluation.macs_ratio]
    assert evaluation.macs_ratio == pytest.approx(params.prune.target_macs, abs=params.prune.macs_tolerance)

    model.save_pretrained(tmp_path / "pruned")
    reloaded = TokenPruningBertForSequenceClassification.from_pretrained(tmp_path / "pruned")
    again = evaluate(reloaded, spec, splits["eval"], tokenizer, 32, 24)
    assert again.metrics == evaluation.metrics and again.macs_ratio == evaluation.macs_ratio


def test_fine_tuning_brings_a_search_that_stopped_over_the_budget_to_it(toy_top):
    params, spec, splits, tokenizer, tmp_path = toy_top
    # 15 epochs end the toy's search over this budget; fine-tuning starts there, scaled down to the budget.
    low = params.prune.model_copy(update={"target_macs": 0.4, "macs_tolerance": 0.03, "epochs": 15})
    teacher, student = load_models(tmp_path / "teacher", low)
    _, evaluation, run = train_token_pruning(teacher, student, spec, splits, tokenizer, low, 24)
    searched = [record["macs_ratio"] for record in run["history"] if record["phase"] == "search"]
    assert min(searched) > low.target_macs + low.macs_tolerance  # the search alone would have failed
    assert evaluation.macs_ratio <= low.target_macs + low.macs_tolerance


def test_a_target_under_the_prune_layers_floor_fails_before_training(toy_top, monkeypatch):
    params, spec, splits, tokenizer, tmp_path = toy_top
    unreachable = params.prune.model_copy(update={"target_macs": 0.01})
    teacher, student = load_models(tmp_path / "teacher", unreachable)
    monkeypatch.setattr(train_module, "batch_loader", None)  # no training batch may be drawn
    monkeypatch.setattr(train_module, "split_lengths", lambda *args: real_lengths(splits["train"]))
    with pytest.raises(
        ParamsError, match=r"target_macs 0\.01 is under the cheapest model .* \[1\] allow .* \(0\.\d+\)"
    ):
        train_token_pruning(teacher, student, spec, splits, tokenizer, unreachable, 24)


def test_the_same_keep_ratios_cost_a_larger_share_of_shorter_inputs(toy_top):
    params, _, splits, tokenizer, tmp_path = toy_top
    config = AutoConfig.from_pretrained(tmp_path / "teacher")
    lengths = [sum(mask) for mask in splits["train"]["attention_mask"]]
    middle = sorted(lengths)[len(lengths) // 2]
    short = splits["train"].filter(lambda example: sum(example["attention_mask"]) < middle)
    long = splits["train"].filter(lambda example: sum(example["attention_mask"]) >= middle)

    def ratio(split, keep: float) -> float:
        return train_module.split_macs_ratio(split, tokenizer, params.prune, config, [keep])

    assert ratio(short, 1.0) == pytest.approx(1.0) and ratio(long, 1.0) == pytest.approx(1.0)
    # [CLS] is never pruned, and it is a larger share of a short input.
    assert ratio(short, 0.3) > ratio(long, 0.3)
    assert ratio(splits["train"], 0.0) == pytest.approx(
        train_module.macs_floor(splits["train"], tokenizer, params.prune, config)
    )


def test_a_search_too_short_for_its_target_is_a_clear_error(toy_top):
    params, spec, splits, tokenizer, tmp_path = toy_top
    short = params.prune.model_copy(update={"epochs": 1.0, "finetune_epochs": 0.0})
    teacher, student = load_models(tmp_path / "teacher", short)
    with pytest.raises(ParamsError, match=r"never reached the MACs target 0\.6 \(last measured ratio 1\.000\)"):
        train_token_pruning(teacher, student, spec, splits, tokenizer, short, 24)


def real_lengths(split):
    lengths = torch.tensor([sum(mask) for mask in split["attention_mask"]])
    return lengths, torch.ones_like(lengths)


def test_distill_layer_outside_the_model(toy_top):
    params, *_, tmp_path = toy_top
    bad = params.prune.model_copy(update={"distill_layers": [7]})
    with pytest.raises(ParamsError, match="distill_layers: layer 7 is outside the model"):
        load_models(tmp_path / "teacher", bad)


@pytest.mark.parametrize("option", ["protect_question", "rank_by_question"])
def test_question_options_on_a_classifier_are_a_params_error(toy_top, option):
    params, *_, tmp_path = toy_top
    bad = params.prune.model_copy(update={option: True})
    with pytest.raises(ParamsError, match="rank_by_question are for QA models only"):
        load_models(tmp_path / "teacher", bad)


@pytest.mark.parametrize(("phase_losses", "calls"), [("_step_losses", 70), ("_finetune_losses", 10)])
def test_interrupted_training_resumes_to_the_same_result(toy_top, monkeypatch, phase_losses, calls):
    """A kill while searching, or while fine-tuning at the frozen keep ratios, loses nothing."""
    params, spec, splits, tokenizer, tmp_path = toy_top
    checkpoint = tmp_path / "ckpt" / "top.pt"
    teacher, student = load_models(tmp_path / "teacher", params.prune)
    reference, reference_eval, _ = train_token_pruning(teacher, student, spec, splits, tokenizer, params.prune, 24)

    real_losses = getattr(train_module, phase_losses)
    seen = {"n": 0}

    def dies_after_some_steps(*args, **kwargs):
        seen["n"] += 1
        if seen["n"] > calls:
            raise KeyboardInterrupt("simulated kill")
        return real_losses(*args, **kwargs)

    monkeypatch.setattr(train_module, phase_losses, dies_after_some_steps)
    teacher, student = load_models(tmp_path / "teacher", params.prune)
    with pytest.raises(KeyboardInterrupt):
        train_token_pruning(teacher, student, spec, splits, tokenizer, params.prune, 24, checkpoint_file=checkpoint)
    assert checkpoint.is_file()
    monkeypatch.setattr(train_module, phase_losses, real_losses)

    teacher, student = load_models(tmp_path / "teacher", params.prune)
    resumed, resumed_eval, run = train_token_pruning(
        teacher, student, spec, splits, tokenizer, params.prune, 24, checkpoint_file=checkpoint
    )
    assert [record["step"] for record in run["history"]] == [20, 40, 60, 80, 100, 120, 140]
    assert [record["phase"] for record in run["history"]][-2:] == ["search", "finetune"]
    assert resumed_eval.metrics == reference_eval.metrics
    assert resumed.config.keep_ratios == reference.config.keep_ratios
    state, expected = resumed.state_dict(), reference.state_dict()
    assert all(torch.allclose(state[name], expected[name], atol=1e-6) for name in expected)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]
    assert saved["best"] is not None and saved["cheapest"] is None  # no second state dict once one meets it


def test_selection_keeps_the_best_score_under_the_budget_and_breaks_ties_in_the_band():
    target, tolerance = 0.5, 0.01
    assert selection_rank(0.52, 0.99, target, tolerance) is None  # over the budget: never selected
    at_budget = selection_rank(0.495, 0.80, target, tolerance)
    cheaper_better = selection_rank(0.44, 0.90, target, tolerance)
    cheaper_worse = selection_rank(0.44, 0.79, target, tolerance)
    assert cheaper_better > at_budget > cheaper_worse  # a cheaper checkpoint wins only by scoring higher
    assert selection_rank(0.505, 0.80, target, tolerance) > selection_rank(0.40, 0.80, target, tolerance)  # tie
    assert selection_rank(0.505, 0.85, target, tolerance) > at_budget  # within the band the score decides


def test_state_distillation_adds_the_weighted_mse_of_the_head_states(toy_top):
    params, spec, *_ = toy_top
    torch.manual_seed(3)
    student, teacher = (TokenPruningOutput(logits=torch.randn(4, 2), head_states=torch.randn(4, 8)) for _ in range(2))
    batch = {"attention_mask": torch.ones(4, 5, dtype=torch.long)}
    logits_only = train_module._distillation(student, teacher, batch, spec, params.prune)
    weighted = params.prune.model_copy(update={"state_distill_weight": 0.7})
    with_states = train_module._distillation(student, teacher, batch, spec, weighted)
    expected = 0.7 * ((student.head_states - teacher.head_states) ** 2).mean()
    assert torch.allclose(with_states - logits_only, expected, atol=1e-6, rtol=0)
    assert logits_only > 0 and expected > 0


def test_qa_state_distillation_ignores_padding_positions(toy_top):
    params, *_ = toy_top
    qa = resolve_task("squad", {})
    weighted = params.prune.model_copy(update={"state_distill_weight": 1.0})
    torch.manual_seed(4)
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])}

    def output(states):
        return TokenPruningQAOutput(start_logits=torch.zeros(2, 4), end_logits=torch.zeros(2, 4), head_states=states)

    student_states, teacher_states = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    loss = train_module._distillation(output(student_states), output(teacher_states), batch, qa, weighted)
    moved = student_states.clone()
    moved[0, 3] += 100.0  # a padding position
    assert train_module._distillation(output(moved), output(teacher_states), batch, qa, weighted) == loss
    live = batch["attention_mask"].bool()
    assert torch.allclose(loss, ((student_states[live] - teacher_states[live]) ** 2).mean(), atol=1e-6, rtol=0)


def test_the_damped_constraint_ends_the_search_on_the_target_without_fine_tuning(toy_top):
    params, spec, splits, tokenizer, tmp_path = toy_top
    defaults = PruneParams()
    damped = params.prune.model_copy(
        update={
            "finetune_epochs": 0.0,
            "macs_tolerance": 0.02,
            **{
                name: getattr(defaults, name)
                for name in ("multiplier_update", "multiplier_learning_rate", "constraint_penalty")
            },
        }
    )
    teacher, student = load_models(tmp_path / "teacher", damped)
    _, _, run = train_token_pruning(teacher, student, spec, splits, tokenizer, damped, 24)
    searched = [record["macs_ratio"] for record in run["history"]]
    assert all(record["phase"] == "search" for record in run["history"])
    assert searched[-1] == pytest.approx(damped.target_macs, abs=damped.macs_tolerance)


def test_a_budget_on_eval_lengths_is_what_the_constraint_and_the_fine_tuning_count(toy_top, monkeypatch):
    params, spec, splits, tokenizer, tmp_path = toy_top
    # As in the test above: a search that prunes, ended over the budget, then fine-tuned at it.
    update = {"budget_lengths": "eval", "target_macs": 0.4, "macs_tolerance": 0.03, "epochs": 15}
    prune = params.prune.model_copy(update=update)
    teacher, student = load_models(tmp_path / "teacher", prune)
    config = AutoConfig.from_pretrained(tmp_path / "teacher")
    eval_lengths = train_module.split_lengths(splits["eval"], tokenizer, prune.eval_batch_size, config)
    counted, frozen = [], []
    step_losses, start_finetuning = train_module._step_losses, train_module._start_finetuning

    def spy_step(*args):
        losses = step_losses(*args)
        counted.append((args[-1], losses["expected_macs"], args[2].expected_keep_ratios()))
        return losses

    def spy_start(state, *args):
        start_finetuning(state, *args)
        frozen.append(state[train_module.FROZEN_KEEP_RATIOS])

    monkeypatch.setattr(train_module, "_step_losses", spy_step)
    monkeypatch.setattr(train_module, "_start_finetuning", spy_start)
    train_token_pruning(teacher, student, spec, splits, tokenizer, prune, 24)

    dims = EncoderDims.from_config(config)
    for lengths, expected_macs, keep_ratios in counted:
        assert all(torch.equal(given, want) for given, want in zip(lengths, eval_lengths, strict=True))
        want = expected_macs_ratio(dims, *eval_lengths[:1], prune.prune_layers, keep_ratios.detach(), eval_lengths[1])
        assert float(expected_macs.detach()) == pytest.approx(float(want), abs=1e-5)
    # The fine-tuning's keep ratios spend the budget on the eval split's lengths.
    eval_cost = train_module.split_macs_ratio(splits["eval"], tokenizer, prune, config, frozen[0])
    assert eval_cost == pytest.approx(prune.target_macs, abs=1e-3)
