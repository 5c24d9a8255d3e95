"""SQuAD through the library's stages on a tiny random BERT: prepare, QA teacher, ToP for QA, scoring."""

import json

import datasets
import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering

from pipeline.prune import prune_teacher
from top.backbone import load_tokenizer
from top.data.prepare import load_prepared, prepare_task
from top.errors import DataError, ParamsError
from top.evaluate import evaluate
from top.params import parse_params
from top.pruning.baselines import DevSet
from top.pruning.model import TokenPruningBertForQuestionAnswering, pruning_model_class
from top.qa import prepare as qa_prepare
from top.qa.evaluate import QAReference
from top.qa.squad import QAExample
from top.teacher import finetune_teacher

from .conftest import tiny_pipeline_params
from .test_baselines import static_topk


def squad_params(params_dict, tiny_bert_dir, shared_data_dir, tmp_path, **prune):
    tiny_pipeline_params(params_dict, tiny_bert_dir, tmp_path)
    params_dict["data"].update(task="squad", data_dir=str(shared_data_dir), max_train_samples=40, max_eval_samples=16)
    params_dict["data"]["qa"].update(max_length=96, doc_stride=32)
    params_dict["prune"].update(epochs=30, eval_steps=30, **prune)
    return parse_params(params_dict)


@pytest.fixture
def squad_prepared(params_dict, tiny_bert_dir, shared_data_dir, tmp_path):
    params = squad_params(params_dict, tiny_bert_dir, shared_data_dir, tmp_path)
    metrics = prepare_task(params.data, params.model.backbone, tmp_path / "prepared")
    return params, metrics, tmp_path


def test_prepare_windows_questions_split_by_article(squad_prepared):
    _, metrics, tmp_path = squad_prepared
    assert metrics["questions"] == {"train": 40, "eval": 16}
    assert metrics["rows"]["eval"] >= 16  # long contexts give a question several windows
    assert metrics["split"]["by"] == "article" and metrics["split"]["articles"] == {"train": 36, "eval": 12}
    spec, splits, meta = load_prepared(tmp_path / "prepared")
    assert spec.is_qa and spec.primary_metric == "f1" and meta["qa"]["max_length"] == 96
    assert max(len(ids) for ids in splits["eval"]["input_ids"]) <= 96
    assert len(splits["eval_examples"]) == 16


def test_gold_windows_score_perfectly_through_the_prepared_offsets(squad_prepared):
    """Logits that point at each window's gold span decode to the gold answers: EM = F1 = 1."""
    _, _, tmp_path = squad_prepared
    _, splits, meta = load_prepared(tmp_path / "prepared")
    windows = splits["eval"]
    starts, ends = [], []
    for ids, start, end in zip(windows["input_ids"], windows["start_positions"], windows["end_positions"], strict=True):
        start_logits, end_logits = np.zeros(len(ids)), np.zeros(len(ids))
        if start > 0:  # a window holding the answer
            start_logits[start], end_logits[end] = 10.0, 10.0
        starts.append(start_logits)
        ends.append(end_logits)
    scores, answers = QAReference.from_prepared(splits, meta).score(windows, starts, ends)
    assert scores == {"exact_match": 1.0, "f1": 1.0}
    assert len(answers) == 16


def test_qa_teacher_then_token_pruning(squad_prepared):
    params, _, tmp_path = squad_prepared
    teacher = finetune_teacher(
        tmp_path / "prepared",
        params.model.backbone,
        params.teacher,
        tmp_path / "teacher",
        tmp_path / "tl",
        tmp_path / "c",
    )
    assert 0.0 <= teacher["exact_match"] <= teacher["f1"] <= 1.0
    assert teacher["questions"] == {"train": 40, "eval": 16}
    assert BertForQuestionAnswering.from_pretrained(tmp_path / "teacher").config.architectures == [
        "BertForQuestionAnswering"
    ]
    assert pruning_model_class(tmp_path / "teacher") is TokenPruningBertForQuestionAnswering

    metrics = prune_teacher(
        tmp_path / "prepared", tmp_path / "teacher", params.prune, tmp_path / "pruned", tmp_path / "pl", tmp_path / "c"
    )
    assert metrics["macs_ratio_real_lengths"] <= params.prune.target_macs + params.prune.macs_tolerance
    assert metrics["protect_question"] is False and set(metrics["teacher"]) == {"exact_match", "f1"}
    pruned = TokenPruningBertForQuestionAnswering.from_pretrained(tmp_path / "pruned")
    spec, splits, meta = load_prepared(tmp_path / "prepared")
    again = evaluate(
        pruned,
        spec,
        splits["eval"],
        load_tokenizer(str(tmp_path / "pruned")),
        8,
        96,
        QAReference.from_prepared(splits, meta),
    )
    assert again.metrics == {name: metrics[name] for name in ("exact_match", "f1")}
    json.dumps(metrics)  # the stage writes it as JSON

    by_question = params.prune.model_copy(update={"protect_question": True, "rank_by_question": True})
    ranked = prune_teacher(
        tmp_path / "prepared", tmp_path / "teacher", by_question, tmp_path / "pq", tmp_path / "pql", tmp_path / "c"
    )
    assert ranked["rank_by_question"] is True and ranked["teacher"] == metrics["teacher"]
    # The teacher's ranking, the distillation target, is scored from the question too: another cached file.
    assert ranked["teacher_outputs"]["file"] != metrics["teacher_outputs"]["file"]
    assert TokenPruningBertForQuestionAnswering.from_pretrained(tmp_path / "pq").config.rank_by_question is True
    # Static top-k at ToP's MACs: its schedule counts the protected question whole, so it lands on them too.
    dev = DevSet(
        spec, splits["eval"], load_tokenizer(str(tmp_path / "teacher")), 8, 96, QAReference.from_prepared(splits, meta)
    )
    target = ranked["macs_ratio_real_lengths"]
    static = static_topk(tmp_path / "teacher", params.prune.prune_layers, target, dev, True, True)
    assert static["macs_ratio_real_lengths"] == pytest.approx(target, abs=0.02)


def test_protected_question_tokens_survive_pruning(squad_prepared):
    """On real windows, a protected question stays whole and the keep ratio applies to the context alone."""
    _, _, tmp_path = squad_prepared
    _, splits, _ = load_prepared(tmp_path / "prepared")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64
    )
    config.prune_layers, config.keep_ratios, config.protect_question = [1], [0.1], True
    model = TokenPruningBertForQuestionAnswering(config).eval()
    for row in splits["eval"].select(range(4)):
        inputs = {name: torch.tensor([row[name]]) for name in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            survivors = int(model(**inputs).token_counts[0, -1])
        question = int((inputs["token_type_ids"] == 0).sum())  # [CLS] question [SEP]
        assert survivors == question + round(0.1 * (len(row["input_ids"]) - question))


def test_a_bad_stride_is_a_params_error(params_dict, tiny_bert_dir, shared_data_dir, tmp_path):
    params = squad_params(params_dict, tiny_bert_dir, shared_data_dir, tmp_path)
    bad = params.data.__class__(
        **{**params.data.__dict__, "qa": params.data.qa.__class__(**{**params.data.qa.__dict__, "doc_stride": 60})}
    )
    with pytest.raises(ParamsError, match="doc_stride"):
        prepare_task(bad, params.model.backbone, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hub_layout_becomes_the_same_examples(params_dict, monkeypatch):
    row = {
        "id": "q1",
        "title": "Cats",
        "context": "Cats purr when content.",
        "question": "When do cats purr?",
        "answers": {"text": ["when content"], "answer_start": [10]},
    }
    hub = datasets.DatasetDict({split: datasets.Dataset.from_list([row]) for split in ("train", "validation")})
    monkeypatch.setattr(qa_prepare.datasets, "load_dataset", lambda name: hub if name == "squad" else None)
    train, evaluation, source = qa_prepare.load_squad_examples(None, parse_params(params_dict).data.qa)
    assert source == {"kind": "hub", "dataset": "squad"}
    assert train == evaluation == [QAExample("q1", "Cats", row["context"], row["question"], ("when content",), (10,))]


def test_a_missing_local_squad_file_is_named(params_dict, tmp_path):
    with pytest.raises(DataError, match=r"SQuAD file not found: .*squad/dev-v1.1.json"):
        qa_prepare.load_squad_examples(tmp_path, parse_params(params_dict).data.qa)
