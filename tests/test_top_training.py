"""ToP training end to end on a tiny random BERT: it meets the MACs target and the saved model reloads."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from top.backbone import load_tokenizer
from top.data.prepare import load_prepared, prepare_task
from top.errors import ParamsError
from top.params import parse_params
from top.pruning import train as train_module
from top.pruning.model import TokenPruningBertForSequenceClassification
from top.pruning.train import evaluate, load_models, train_token_pruning

from .conftest import toy_dataset, use_toy_task


@pytest.fixture
def toy_setup(params_dict, tiny_bert_dir, tmp_path):
    toy_dataset(tmp_path, rows=64)
    use_toy_task(params_dict, tmp_path, labels=["0", "1"])
    params_dict["data"]["max_length"] = 24
    params_dict["model"]["backbone"] = str(tiny_bert_dir)
    params_dict["prune"].update(
        target_macs=0.6,
        prune_layers=[1],
        bins=4,
        top_k=4,
        distill_layers=[0],
        epochs=30,
        warmup_ratio=0.3,
        learning_rate=1e-4,
        mask_learning_rate=0.1,
        batch_size=16,
        eval_batch_size=32,
        eval_steps=20,
        macs_tolerance=0.05,
        device="cpu",
        threads=1,
    )
    params = parse_params(params_dict)
    prepare_task(params.data, params.model.backbone, tmp_path / "prepared")
    # The tiny random BERT plays the fine-tuned teacher; (4 layers: config from conftest has 2, so build one).
    config = BertConfig.from_pretrained(tiny_bert_dir, num_hidden_layers=3, num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "teacher")
    spec, splits, _ = load_prepared(tmp_path / "prepared")
    return params, spec, splits, load_tokenizer(str(tiny_bert_dir)), tmp_path


def test_training_meets_the_target_and_reloads(toy_setup):
    params, spec, splits, tokenizer, tmp_path = toy_setup
    teacher, student = load_models(tmp_path / "teacher", params.prune)
    model, evaluation, run = train_token_pruning(teacher, student, spec, splits, tokenizer, params.prune, 24)
    assert evaluation.macs_ratio <= params.prune.target_macs + params.prune.macs_tolerance
    assert evaluation.macs_ratio_padded < evaluation.macs_ratio  # toy texts are far shorter than max_length
    assert model.config.keep_ratios[0] < 1.0
    assert run["history"] and run["steps"] == 120

    model.save_pretrained(tmp_path / "pruned")
    reloaded = TokenPruningBertForSequenceClassification.from_pretrained(tmp_path / "pruned")
    again = evaluate(reloaded, spec, splits["eval"], tokenizer, 32, 24)
    assert again.metrics == evaluation.metrics and again.macs_ratio == evaluation.macs_ratio


def test_distill_layer_outside_the_model(toy_setup):
    params, *_, tmp_path = toy_setup
    bad = params.prune.__class__(**{**params.prune.__dict__, "distill_layers": [7]})
    with pytest.raises(ParamsError, match="distill_layers: layer 7 is outside the model"):
        load_models(tmp_path / "teacher", bad)


def test_interrupted_training_resumes_to_the_same_result(toy_setup, monkeypatch):
    params, spec, splits, tokenizer, tmp_path = toy_setup
    checkpoint = tmp_path / "ckpt" / "top.pt"
    teacher, student = load_models(tmp_path / "teacher", params.prune)
    reference, reference_eval, _ = train_token_pruning(teacher, student, spec, splits, tokenizer, params.prune, 24)

    real_step = train_module._step_losses
    calls = {"n": 0}

    def dies_at_step_70(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 70:
            raise KeyboardInterrupt("simulated kill")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "_step_losses", dies_at_step_70)
    teacher, student = load_models(tmp_path / "teacher", params.prune)
    with pytest.raises(KeyboardInterrupt):
        train_token_pruning(teacher, student, spec, splits, tokenizer, params.prune, 24, checkpoint_file=checkpoint)
    assert checkpoint.is_file()
    monkeypatch.setattr(train_module, "_step_losses", real_step)

    teacher, student = load_models(tmp_path / "teacher", params.prune)
    resumed, resumed_eval, run = train_token_pruning(
        teacher, student, spec, splits, tokenizer, params.prune, 24, checkpoint_file=checkpoint
    )
    assert [record["step"] for record in run["history"]] == [20, 40, 60, 80, 100, 120]
    assert resumed_eval.metrics == reference_eval.metrics
    assert resumed.config.keep_ratios == reference.config.keep_ratios
    state, expected = resumed.state_dict(), reference.state_dict()
    assert all(torch.allclose(state[name], expected[name], atol=1e-6) for name in expected)
