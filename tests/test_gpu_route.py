"""Training on a GPU and running on the CPU, checked on a CPU-only machine: the autocast each device gets, the
training code under bf16 autocast, optional extras, and a half-precision sharded copy loading back in float32."""

import ast
import contextlib
import logging
import warnings

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from top import device as device_module
from top.backbone import check_bert_dir, load_float32
from top.data.batches import batch_loader
from top.device import autocast_for, dtype_name, resolve_device, training_dtype, training_record
from top.errors import ParamsError
from top.pruning import train as train_module
from top.pruning.l0 import LagrangianConstraint, PruningMasks
from top.pruning.macs import EncoderDims
from top.pruning.model import pruning_model_class
from top.pruning.train import load_models, load_with_schedule
from top.transfer import main as transfer_main
from top.transfer import save_for_transfer

from .conftest import REPO_ROOT


def test_auto_precision_is_float32_on_the_cpu_and_bf16_on_cuda():
    assert isinstance(autocast_for("cpu", "auto"), contextlib.nullcontext)
    assert isinstance(autocast_for(torch.device("cpu"), "auto"), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without CUDA torch warns that it would disable the (unused) context
        for device in ("cuda", torch.device("cuda:0")):
            chosen = autocast_for(device, "auto")
            assert isinstance(chosen, torch.autocast)
            assert chosen.device == "cuda" and chosen.fast_dtype == torch.bfloat16
    assert [dtype_name(training_dtype(device, "auto")) for device in ("cpu", "cuda")] == ["float32", "bfloat16"]


def test_an_explicit_precision_holds_on_either_device():
    chosen = autocast_for("cpu", "bfloat16")
    assert isinstance(chosen, torch.autocast) and chosen.device == "cpu" and chosen.fast_dtype == torch.bfloat16
    assert isinstance(autocast_for("cuda", "float32"), contextlib.nullcontext)
    assert [dtype_name(training_dtype(device, "float32")) for device in ("cpu", "cuda")] == ["float32"] * 2


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_on_a_cpu_that_would_emulate_it_warns_once(monkeypatch, caplog, native):
    monkeypatch.setattr(device_module, "has_bfloat16_matmul", lambda: native)
    device_module.warn_emulated_bfloat16.cache_clear()
    with caplog.at_level(logging.WARNING, logger="top.device"):
        for _ in range(3):
            assert training_dtype("cpu", "bfloat16") == torch.bfloat16  # the user's choice stands
        training_dtype("cuda", "bfloat16")
    warned = [record.message for record in caplog.records if "no bfloat16 matrix instructions" in record.message]
    assert len(warned) == (0 if native else 1)
    device_module.warn_emulated_bfloat16.cache_clear()


def test_a_training_stage_names_the_gpu_or_the_cpu_it_ran_on(monkeypatch):
    on_cpu = training_record("cpu", "auto")
    assert on_cpu["device"] == "cpu" and on_cpu["dtype"] == "float32"
    assert set(on_cpu["machine"]) == {"cpu", "logical_cores", "isa_flags", "threads"}
    assert on_cpu["machine"]["threads"] == torch.get_num_threads()
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"NVIDIA H200 ({device})")
    assert training_record("cuda", "auto") == {
        "device": "cuda",
        "dtype": "bfloat16",
        "machine": {"gpu": "NVIDIA H200 (cuda)"},
    }


def test_cuda_asked_without_cuda_is_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParamsError, match=r"^prune\.device is 'cuda' but no CUDA device is available"):
        resolve_device("cuda", "prune.device")
    assert resolve_device("auto", "prune.device") == "cpu"


def test_the_library_imports_no_optional_extra_at_module_level():
    """dvclive and prefect are optional: the library (top/) may import them only inside the function using them."""
    offenders = []
    for path in sorted((REPO_ROOT / "top").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] in ("dvclive", "prefect")]
    assert not offenders


@pytest.mark.parametrize("phase", ["search", "finetune"])
def test_a_training_step_runs_under_bf16_autocast(toy_top, phase):
    """The dtype mixing of a bfloat16 step (bf16 matmuls, float32 norms, masks and losses), on the CPU's autocast as
    a CUDA step sees it on the GPU's: every loss comes out float32 and finite, and the gradients reach the weights."""
    params, spec, splits, tokenizer, tmp_path = toy_top
    prune = params.prune.model_copy(update={"state_distill_weight": 0.5, "precision": "bfloat16"})
    teacher, student = load_models(tmp_path / "teacher", prune)
    batch = next(iter(batch_loader(splits["train"], tokenizer, prune.batch_size, shuffle=True, seed=0)))
    student.train()
    if phase == "search":
        masks = PruningMasks(len(prune.prune_layers), prune.bins)
        dims = EncoderDims.from_config(student.config)
        losses = train_module._step_losses(
            teacher, student, masks, LagrangianConstraint(), batch, spec, prune, dims, 0.7, 0.5
        )
    else:
        student.set_keep_ratios([0.5] * len(prune.prune_layers))
        losses = train_module._finetune_losses(teacher, student, batch, spec, prune)
    assert all(value.dtype == torch.float32 and torch.isfinite(value) for value in losses.values())
    losses["total"].backward()
    assert student.classifier.weight.grad is not None and student.classifier.weight.grad.dtype == torch.float32


def tiny_classifier(path):
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, num_labels=2
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    return model


def test_a_half_precision_sharded_model_loads_back_in_float32(tmp_path):
    """What a GPU host hands over (save_pretrained in float16, in shards) runs in float32 through the loaders
    that the CPU stages use."""
    model = tiny_classifier(tmp_path / "fp32")
    BertForSequenceClassification.from_pretrained(tmp_path / "fp32").half().save_pretrained(
        tmp_path / "fp16", max_shard_size="20KB"
    )
    assert len(list((tmp_path / "fp16").glob("model-*-of-*.safetensors"))) > 1
    check_bert_dir(tmp_path / "fp16")
    assert pruning_model_class(tmp_path / "fp16").from_pretrained(tmp_path / "fp16").dtype == torch.float16
    inputs = {"input_ids": torch.randint(1, 100, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    with torch.no_grad():
        expected = model(**inputs).logits
        for loaded in (
            load_float32(pruning_model_class(tmp_path / "fp16"), tmp_path / "fp16"),  # quantize, benchmark
            load_with_schedule(tmp_path / "fp16", [1], [1.0]),  # prune's student, baselines
        ):
            assert {parameter.dtype for parameter in loaded.parameters()} == {torch.float32}
            assert torch.allclose(loaded.eval()(**inputs, mode="physical").logits, expected, atol=1e-2)


def test_the_transfer_copy_keeps_every_file_and_loads_back(tmp_path, capsys):
    model = tiny_classifier(tmp_path / "model")
    (tmp_path / "model/tokenizer.json").write_text("{}", encoding="utf-8")
    files = save_for_transfer(tmp_path / "model", tmp_path / "copy", max_shard_size="20KB")
    assert len(files) > 1 and (tmp_path / "copy/model.safetensors.index.json").is_file()
    assert (tmp_path / "copy/tokenizer.json").read_text(encoding="utf-8") == "{}"
    assert sum(file.stat().st_size for file in files) < 0.6 * (tmp_path / "model/model.safetensors").stat().st_size
    copy = load_float32(BertForSequenceClassification, tmp_path / "copy").eval()
    inputs = {"input_ids": torch.randint(1, 100, (2, 9))}
    with torch.no_grad():
        assert torch.allclose(copy(**inputs).logits, model(**inputs).logits, atol=1e-2)
    transfer_main([str(tmp_path / "copy"), str(tmp_path / "again"), "--max-shard-size", "1GB"])
    assert "again: 1 weight file(s)" in capsys.readouterr().out
