"""The call-overhead study's profile split, on a tiny random BERT: every part is there and they add up."""

from __future__ import annotations

import datasets
import pytest

from studies.call_overhead import _eager, event_kind, model_builders, profile_models, shares
from top.backbone import load_tokenizer
from top.bench import benchmark_batches


def test_profile_split_adds_up_at_both_thread_counts(tiny_bert_dir):
    tokenizer = load_tokenizer(str(tiny_bert_dir))
    encoded = tokenizer([f"the cat number {index} sat on {'the mat ' * (index % 5)}" for index in range(12)])
    split = datasets.Dataset.from_dict({name: encoded[name] for name in ("input_ids", "attention_mask")})
    batches = {size: benchmark_batches(split, tokenizer, size, "dynamic", 32, 1 + 3) for size in (1, 4)}
    results = profile_models({"dense-fp32-eager": _eager(tiny_bert_dir)}, batches, threads=2, warmup=1)
    for cell in results["dense-fp32-eager"].values():
        assert set(cell) == {"threads_2", "threads_1", "thread_split"}
        for measured in (cell["threads_2"], cell["threads_1"]):
            parts = ("kernel_ms", "framework_operator_ms", "compiled_glue_ms", "python_and_dispatch_ms")
            assert sum(measured[part] for part in parts) == pytest.approx(measured["profiled_wall_ms"], abs=0.01)
            assert measured["kernel_ms"] > 0 and measured["compiled_glue_ms"] == 0  # eager: nothing compiled
            assert measured["events_per_call"] > 10 and "aten::addmm" in measured["top_kernels_ms"]
        assert cell["thread_split"]["wall_speedup"] > 0
    summary = shares(results, 2)
    assert set(summary) == {"dense-fp32-eager/batch_1", "dense-fp32-eager/batch_4"}
    assert sum(value for key, value in summary["dense-fp32-eager/batch_1"].items() if key != "wall_ms") == (
        pytest.approx(1.0, abs=0.01)
    )


def test_the_int8_model_is_profiled_only_where_quantize_made_one(tmp_path):
    assert set(model_builders(tmp_path)) == {"dense-fp32-eager", "top-fp32-eager"}
    (tmp_path / "artifacts" / "int8" / "top").mkdir(parents=True)
    assert set(model_builders(tmp_path)) == {"dense-fp32-eager", "top-fp32-eager", "top-int8-compiled"}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("aten::addmm", "kernel"),
        ("onednn::qlinear_pointwise", "kernel"),
        ("graph_0_cpp_fused_add_native_layer_norm_quantize_per_tensor_0", "kernel"),
        ("aten::view", "framework"),
        ("aten::linear", "framework"),
        ("TorchDynamo Cache Lookup", "compiled_glue"),
        ("## Call CompiledFxGraph f3x2 ##", "compiled_glue"),
        ("Torch-Compiled Region: 0/0", "compiled_glue"),
    ],
)
def test_event_kinds(name, kind):
    assert event_kind(name) == kind
