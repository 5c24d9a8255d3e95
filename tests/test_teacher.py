"""Teacher fine-tuning on a tiny random BERT: outputs, repeatability and bad inputs."""

import json
import logging
import sys
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForSequenceClassification, BertModel, DataCollatorWithPadding, Trainer

from top import teacher as teacher_module
from top.backbone import check_bert_dir, load_new_head, load_tokenizer, resolve_backbone
from top.cpu import cpu_description
from top.data.prepare import prepare_task
from top.errors import ModelBuildError, ModelDirError, ParamsError
from top.params import parse_params
from top.teacher import _score as teacher_score
from top.teacher import finetune_teacher, last_complete_checkpoint

from .conftest import save_tiny_bert, toy_dataset, use_toy_task


def toy_params(params_dict, data_root: Path, backbone: Path, **teacher):
    use_toy_task(params_dict, data_root, labels=["0", "1"])
    params_dict["model"]["backbone"] = str(backbone)
    params_dict["teacher"].update(
        dict(epochs=2, batch_size=8, eval_batch_size=8, save_steps=2, device="cpu", threads=1) | teacher
    )
    return parse_params(params_dict)


def run_teacher(params, work: Path) -> dict:
    prepare_task(params.data, params.model.backbone, work / "prepared")
    return finetune_teacher(
        work / "prepared", params.model.backbone, params.teacher, work / "teacher", work / "live", work / "ckpt"
    )


def test_teacher_trains_saves_and_repeats(params_dict, tiny_bert_dir, tmp_path, monkeypatch):
    toy_dataset(tmp_path)
    params = toy_params(params_dict, tmp_path, tiny_bert_dir)
    scored = []
    monkeypatch.setattr(teacher_module, "_score", lambda *args: scored.append(teacher_score(*args)) or scored[-1])
    metrics = run_teacher(params, tmp_path / "a")
    assert len(scored) == 2 and metrics["accuracy"] == scored[-1]["accuracy"]  # one evaluation an epoch, no more
    for key in ("accuracy", "train_seconds", "train_examples_per_second", "eval_examples_per_second"):
        assert metrics[key] >= 0, key
    assert metrics["train_examples"] == 24 and metrics["eval_examples"] == {"eval": 12}
    assert metrics["resumed_from_checkpoint"] is None
    assert metrics["device"] == "cpu" and metrics["dtype"] == "float32"
    assert metrics["machine"]["isa_flags"] == cpu_description(1)["isa_flags"]  # where it trained

    model = BertForSequenceClassification.from_pretrained(tmp_path / "a/teacher")
    assert model.config.num_labels == 2
    assert (
        model.config.attention_probs_dropout_prob
        == BertConfig.from_pretrained(tiny_bert_dir).attention_probs_dropout_prob
    )
    assert (tmp_path / "a/teacher/tokenizer.json").is_file()
    assert (tmp_path / "a/live/plots/metrics/train/loss.tsv").is_file()
    assert not any((tmp_path / "a/ckpt").iterdir())  # checkpoints are dropped once the model is saved

    repeat = run_teacher(params, tmp_path / "b")
    assert repeat["accuracy"] == metrics["accuracy"]
    first = model.state_dict()
    second = BertForSequenceClassification.from_pretrained(tmp_path / "b/teacher").state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_attention_dropout_override_reaches_the_saved_teacher(params_dict, tiny_bert_dir, tmp_path):
    """The prune stage builds its student from the saved config, so the override must be in it."""
    toy_dataset(tmp_path)
    params = toy_params(params_dict, tmp_path, tiny_bert_dir, epochs=1, attention_dropout=0.0)
    run_teacher(params, tmp_path / "run")
    assert BertConfig.from_pretrained(tmp_path / "run/teacher").attention_probs_dropout_prob == 0.0


def test_incomplete_checkpoints_are_discarded(tmp_path):
    (tmp_path / "checkpoint-4").mkdir(parents=True)
    (tmp_path / "checkpoint-4/trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-6").mkdir()  # killed mid-save: no trainer_state.json
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-6").exists()
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_model_directory_checks(tmp_path, tiny_bert_dir):
    check_bert_dir(tiny_bert_dir)
    with pytest.raises(ModelDirError, match="model directory not found"):
        resolve_backbone(str(tmp_path / "missing"))
    with pytest.raises(ModelDirError, match=r"no config\.json"):
        check_bert_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelDirError, match="holds a 'gpt2' model; a BERT checkpoint"):
        check_bert_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelDirError, match="no weights"):
        check_bert_dir(tmp_path)


def test_cuda_requested_without_cuda(params_dict, tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    toy_dataset(tmp_path)
    params = toy_params(params_dict, tmp_path, tiny_bert_dir, device="cuda")
    with pytest.raises(ParamsError, match=r"teacher\.device is 'cuda' but no CUDA device"):
        run_teacher(params, tmp_path / "run")


def test_backbone_must_match_the_prepared_data(params_dict, tiny_bert_dir, tmp_path):
    toy_dataset(tmp_path)
    params = toy_params(params_dict, tmp_path, tiny_bert_dir)
    prepare_task(params.data, params.model.backbone, tmp_path / "prepared")
    with pytest.raises(ParamsError, match="rerun the prepare stage"):
        finetune_teacher(
            tmp_path / "prepared", "bert-other", params.teacher, tmp_path / "t", tmp_path / "l", tmp_path / "c"
        )


@pytest.mark.parametrize(("grouped", "strategy"), [(False, "random"), (True, "group_by_length")])
def test_group_by_length_picks_the_trainer_sampler(params_dict, tiny_bert_dir, tmp_path, grouped, strategy):
    """Grouping by length changes what the teacher learns (not only its speed), so the choice must reach the Trainer."""
    params = toy_params(params_dict, tmp_path, tiny_bert_dir, group_by_length=grouped)
    arguments = teacher_module._training_arguments(params.teacher, tmp_path / "ckpt", "cpu")
    assert arguments.train_sampling_strategy == strategy


def test_grouped_training_still_evaluates_in_row_order(params_dict, tiny_bert_dir, tmp_path):
    """QA scoring pairs each eval window's logits with its row, so grouping training batches by length must leave
    the evaluation order alone; the plain Trainer reorders it (which is what this guards against)."""
    params = toy_params(params_dict, tmp_path, tiny_bert_dir, group_by_length=True)
    arguments = teacher_module._training_arguments(params.teacher, tmp_path / "ckpt", "cpu")
    lengths = torch.randperm(40, generator=torch.Generator().manual_seed(0)).add(2).tolist()
    rows = datasets.Dataset.from_dict({"input_ids": [[1] * length for length in lengths]})
    model = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    tokenizer = load_tokenizer(str(tiny_bert_dir))

    def eval_order(trainer_class: type) -> list[int]:
        trainer = trainer_class(
            model=model,
            args=arguments,
            eval_dataset=rows,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        return [int(length) for batch in trainer.get_eval_dataloader() for length in batch["attention_mask"].sum(1)]

    assert eval_order(teacher_module.InOrderEvalTrainer) == lengths
    assert eval_order(Trainer) != lengths


def test_teacher_trains_without_dvclive(params_dict, tiny_bert_dir, tmp_path, monkeypatch, caplog):
    """DVCLive is an optional extra: without it the teacher trains and saves the same, minus the live curves (here
    under the CPU's bfloat16 autocast, which the metrics record)."""
    monkeypatch.setitem(sys.modules, "dvclive", None)  # `import dvclive` now raises ImportError
    toy_dataset(tmp_path)
    params = toy_params(params_dict, tmp_path, tiny_bert_dir, epochs=1, precision="bfloat16")
    with caplog.at_level("INFO", logger="top.teacher"):
        metrics = run_teacher(params, tmp_path / "run")
    assert metrics["accuracy"] >= 0 and metrics["device"] == "cpu" and metrics["dtype"] == "bfloat16"
    assert BertForSequenceClassification.from_pretrained(tmp_path / "run/teacher").config.num_labels == 2
    assert [path.name for path in (tmp_path / "run/live").iterdir()] == [teacher_module.NO_LIVE_NOTE]
    assert sum("dvclive is not installed" in record.message for record in caplog.records) == 1


@pytest.mark.parametrize(
    ("device", "precision", "bf16"),
    [("cpu", "auto", False), ("cuda", "auto", True), ("cpu", "bfloat16", True), ("cuda", "float32", False)],
)
def test_the_trainer_computes_in_the_precision_asked(
    params_dict, tiny_bert_dir, tmp_path, monkeypatch, device, precision, bf16
):
    """The arguments the Trainer gets per device and precision (captured: building real CUDA arguments needs a
    GPU); 'auto' is bf16 on CUDA only."""
    params = toy_params(params_dict, tmp_path, tiny_bert_dir, precision=precision)
    monkeypatch.setattr(teacher_module, "TrainingArguments", lambda **arguments: arguments)
    arguments = teacher_module._training_arguments(params.teacher, tmp_path / "ckpt", device)
    assert arguments["bf16"] is bf16 and arguments["dataloader_pin_memory"] is (device == "cuda")
    assert arguments["use_cpu"] is (device == "cpu")


def test_a_new_head_loads_quietly_and_only_the_head_may_be_missing(tmp_path, caplog):
    backbone = save_tiny_bert(tmp_path / "backbone", BertModel)
    config = BertConfig.from_pretrained(backbone, num_labels=3)
    with caplog.at_level(logging.WARNING):
        model = load_new_head(BertForSequenceClassification, backbone, config)
    assert model.classifier.out_features == 3
    assert "LOAD REPORT" not in caplog.text

    weights = load_file(backbone / "model.safetensors")
    save_file(
        {key: value for key, value in weights.items() if "layer.0.output.dense" not in key},
        backbone / "model.safetensors",
    )
    with pytest.raises(ModelBuildError, match=r"lacks encoder weights: bert\.encoder\.layer\.0\.output\.dense\.bias, "):
        load_new_head(BertForSequenceClassification, backbone, config)
