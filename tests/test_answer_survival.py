"""The answer-survival study on a tiny random QA model: its tally follows the prune schedule, and the F1 it
scores from the masked forward's logits is the physical evaluation's."""

import itertools
import json

import pytest
import torch
from transformers import BertForQuestionAnswering

from studies.answer_survival import layer_inputs, measure
from top.backbone import load_tokenizer
from top.data.prepare import load_prepared, prepare_task
from top.evaluate import evaluate
from top.pruning.model import TokenPruningBertForQuestionAnswering
from top.pruning.train import load_with_schedule
from top.qa.evaluate import QAReference

from .conftest import save_tiny_bert
from .test_qa_pipeline import squad_params

PRUNE = [0.7, 0.6, 0.5]  # keep ratios that leave about a fifth of the prunable tokens


@pytest.fixture
def squad_models(params_dict, tiny_bert_dir, shared_data_dir, tmp_path, monkeypatch):
    """A prepared SQuAD sample, two random tiny QA models (a teacher, and the weights the pruned model gets, which
    differ so that a mixed-up pair shows in the F1s) and the study's working directory."""
    params = squad_params(params_dict, tiny_bert_dir, shared_data_dir, tmp_path)
    prepare_task(params.data, params.model.backbone, tmp_path / "prepared")
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(save_tiny_bert(tmp_path / f"model-{seed}", BertForQuestionAnswering, num_hidden_layers=4))
    monkeypatch.chdir(tmp_path)
    return params, tmp_path / "prepared", *models


def save_pruned(source_dir, target, keep_ratios, protect_question):
    model = load_with_schedule(source_dir, [1, 2, 3], keep_ratios, protect_question)
    model.save_pretrained(target)
    load_tokenizer(str(source_dir)).save_pretrained(target)
    return target


def physical_f1(model_dir, prepared_dir, batch_size):
    spec, splits, meta = load_prepared(prepared_dir)
    model = TokenPruningBertForQuestionAnswering.from_pretrained(model_dir).eval()
    reference = QAReference.from_prepared(splits, meta)
    tokenizer = load_tokenizer(str(model_dir))
    run = evaluate(model, spec, splits["eval"], tokenizer, batch_size, meta["max_length"], reference)
    return round(run.metrics["f1"], 4)


@pytest.mark.parametrize("protect_question", [False, True])
def test_tally_follows_the_schedule_and_f1_is_the_physical_evaluation(squad_models, protect_question):
    params, prepared, teacher, source = squad_models
    pruned = save_pruned(source, prepared.parent / "pruned", PRUNE, protect_question)
    record = json.loads(measure(params, prepared, teacher, pruned).read_text(encoding="utf-8"))
    shares = record["share_entering_each_layer"]
    assert set(shares) == {"answer", "other_context", "question"}
    for kind, per_layer in shares.items():
        assert per_layer[0] == 1.0, kind  # nothing is pruned before the first prune layer
        assert all(later <= earlier for earlier, later in itertools.pairwise(per_layer)), kind
    assert shares["other_context"][-1] < 0.5 and shares["answer"][-1] < 0.5
    assert (shares["question"] == [1.0] * 4) is protect_question
    groups = record["questions_by_answer_reaching_last_layer"]
    assert sum(group["questions"] for group in groups.values()) == 16
    assert record["pruned_f1"] == physical_f1(pruned, prepared, params.prune.eval_batch_size)
    assert record["teacher_f1"] == physical_f1(teacher, prepared, params.prune.eval_batch_size)
    assert record["pruned_f1"] != record["teacher_f1"]


def test_without_pruning_every_answer_reaches_the_last_layer(squad_models):
    params, prepared, teacher, _ = squad_models
    unpruned = save_pruned(teacher, prepared.parent / "unpruned", [1.0, 1.0, 1.0], False)
    path = measure(params, prepared, teacher, unpruned, record="survival-unpruned")
    assert path.name == "survival-unpruned.json"  # a name given, not the task's
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["rank_by_question"] is False
    assert all(per_layer == [1.0] * 4 for per_layer in record["share_entering_each_layer"].values())
    groups = record["questions_by_answer_reaching_last_layer"]
    assert groups["pruned_before"]["questions"] == 0
    assert groups["reached"]["questions"] + groups["no_window_holds_the_answer"]["questions"] == 16
    assert groups["reached"]["pruned_f1"] == groups["reached"]["teacher_f1"]


def test_layer_inputs_refuses_scores_that_miss_a_live_token():
    scores = (torch.tensor([[0.5, 0.2, 0.3]]), torch.tensor([[0.6, 0.0, 0.4]]))
    assert layer_inputs(scores, torch.tensor([[3, 2, 2]])).tolist() == [[[True, True, True], [True, False, True]]]
    with pytest.raises(RuntimeError, match="live token counts"):
        layer_inputs(scores, torch.tensor([[3, 3, 2]]))
