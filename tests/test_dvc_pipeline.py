"""End to end in scratch git repositories: `dvc repro` of prepare + teacher on a real MRPC subset with the real
backbone (a second repro does nothing; a teacher param change reruns only the teacher), and the whole pipeline
on a toy task with a tiny random backbone."""

import json
import sys

import pytest

from top.bench import SPEEDUP_KEYS

from .conftest import tiny_pipeline_params
from .stage_runner import init_dvc_repo, run, scratch_project, stage_env, write_params


@pytest.mark.slow
def test_dvc_repro_prepare_and_teacher(shared_data_dir, params_dict, tmp_path):
    params_dict["data"].update(data_dir=str(shared_data_dir), max_train_samples=32, max_eval_samples=16, max_length=64)
    params_dict["teacher"].update(epochs=1, batch_size=16, threads=1)
    project = scratch_project(tmp_path / "project", params_dict)
    env = stage_env(tmp_path)
    init_dvc_repo(project, env)

    first = run(["dvc", "repro", "teacher"], project, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Running stage 'prepare'" in first.stdout and "Running stage 'teacher'" in first.stdout
    teacher = json.loads((project / "artifacts/metrics/teacher.json").read_text())
    assert teacher["task"] == "mrpc" and 0 <= teacher["f1"] <= 1 and teacher["eval_examples"] == {"eval": 16}
    prepare = json.loads((project / "artifacts/metrics/prepare.json").read_text())
    assert prepare["rows"] == {"train": 32, "eval": 16}

    second = run(["dvc", "repro", "teacher"], project, env)
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout
    assert "didn't change" in second.stdout

    params_dict["teacher"]["learning_rate"] = 3.0e-5
    write_params(project, params_dict)
    third = run(["dvc", "repro", "teacher"], project, env)
    assert third.returncode == 0, third.stderr
    assert "Running stage 'teacher'" in third.stdout
    assert "Running stage 'prepare'" not in third.stdout

    shown = run(["dvc", "metrics", "show", "--json"], project, env)
    assert shown.returncode == 0 and "teacher.json" in shown.stdout
    status = run(["dvc", "status", "teacher"], project, env)
    assert "up to date" in status.stdout


def test_dvc_repro_whole_pipeline_on_a_tiny_model(params_dict, tiny_bert_dir, tmp_path):
    project = scratch_project(tmp_path / "project", tiny_pipeline_params(params_dict, tiny_bert_dir, tmp_path / "data"))
    env = stage_env(tmp_path)
    init_dvc_repo(project, env)
    first = run(["dvc", "repro"], project, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    prune = json.loads((project / "artifacts/metrics/prune.json").read_text())
    assert prune["macs_ratio_real_lengths"] <= prune["target_macs"] + 0.05
    baselines = json.loads((project / "artifacts/metrics/baselines.json").read_text())
    assert baselines["top"] == prune["accuracy"] and baselines["metric"] == "accuracy"
    assert (project / "artifacts/pruned/config.json").is_file()
    quantize = json.loads((project / "artifacts/metrics/quantize.json").read_text())
    assert set(quantize) >= {"teacher", "top"} and quantize["top"]["prediction_agreement"] >= 0.9
    benchmark = json.loads((project / "artifacts/metrics/benchmark.json").read_text())
    assert set(benchmark["latency"]) == {
        "dense-fp32-hf-eager",
        "dense-fp32-eager",
        "dense-int8-eager",
        "top-fp32-eager",
        "top-int8-eager",
        "dense-fp32-ort",
        "dense-int8-ort",
        "dense-fp32-openvino",
        "dense-int8-openvino",
        "top-fp32-ort",
        "top-int8-ort",
    }
    assert set(benchmark["dev_metric"]) == set(benchmark["latency"])
    assert sorted(path.name for path in (project / "artifacts/onnx").iterdir()) == ["top-fp32.onnx", "top-int8.onnx"]
    assert benchmark["latency"]["top-int8-eager"]["padded"]["batch_4"]["median_ms"] > 0
    assert (project / "artifacts/metrics/benchmark.png").stat().st_size > 0
    flex = json.loads((project / "artifacts/metrics/flex.json").read_text())
    assert {"grids", "dynamic_front", "best_tradeoff", "teacher"} <= set(flex)
    assert (project / "artifacts/metrics/flex.png").stat().st_size > 0
    flex_latency = json.loads((project / "artifacts/metrics/flex_benchmark.json").read_text())["latency"]
    dense_fp32 = {"dense-fp32-eager", "dense-fp32-ort", "dense-fp32-openvino"}
    assert set(flex_latency) == dense_fp32 | {"flex-dynamic-fp32-eager", "flex-static-fp32-eager"}
    assert flex_latency["flex-dynamic-fp32-eager"]["dynamic"]["batch_4"]["speedup_vs_best_dense_fp32"] > 0
    flex_summary = json.loads((project / "artifacts/metrics/flex_benchmark.json").read_text())["summary"]
    at_batch_1 = flex_summary["flex-dynamic-fp32-eager/dynamic/batch_1"]
    assert at_batch_1["fastest_dense"] in dense_fp32 and at_batch_1["speedup_vs_dense_fp32_same_runtime"] > 0
    second = run(["dvc", "repro"], project, env)
    assert second.returncode == 0 and "Running stage" not in second.stdout, second.stdout
    summary = run([sys.executable, "-m", "studies.summary"], project, env)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "top-int8-eager" in summary.stdout and "artifacts/pruned" in summary.stdout

    quick = run([sys.executable, "-m", "pipeline.benchmark", "--quick"], project, env)
    assert quick.returncode == 0, quick.stderr[-3000:]
    benchmark = json.loads((project / "artifacts/metrics/benchmark.json").read_text())
    assert benchmark["quick"] is True and benchmark["settings"]["batch_sizes"] == [1, 2]
    assert set(benchmark) == {
        *("task", "metric", "quick", "settings", "machine", "macs_ratio"),
        *("dev_metric", "peers", "top_ort", "latency", "summary"),
    }
    assert {"cpu", "logical_cores", "isa_flags", "threads", "torch", "neural_compressor"} <= set(benchmark["machine"])
    row = benchmark["latency"]["top-fp32-eager"]["dynamic"]["batch_2"]
    assert set(row) == {"median_ms", "p90_ms", "examples_per_second", "round_medians_ms", *SPEEDUP_KEYS}
    assert len(row["round_medians_ms"]) == benchmark["settings"]["rounds"] == 2
    # The fastest dense FP32 variant of any runtime (PyTorch or a peer) is the reference: its own speed-up is 1.
    dense_fp32 = [cells["padded"]["batch_1"] for name, cells in benchmark["latency"].items() if "dense-fp32" in name]
    assert max(cell["speedup_vs_best_dense_fp32"] for cell in dense_fp32) == 1.0
    assert all(cell["speedup_min_over_rounds"] <= cell["speedup_max_over_rounds"] for cell in dense_fp32)
    assert all("speedup_over_macs_reduction" in entry for entry in benchmark["summary"].values())


def test_dvc_repro_whole_pipeline_on_squad(params_dict, tiny_bert_dir, shared_data_dir, tmp_path):
    """`-S data.task=squad` in params: every stage runs on QA windows (flex says it does not apply)."""
    params = tiny_pipeline_params(params_dict, tiny_bert_dir, tmp_path / "data")
    params["data"].update(task="squad", data_dir=str(shared_data_dir), max_train_samples=32, max_eval_samples=12)
    params["data"]["qa"].update(max_length=80, doc_stride=24)
    params["prune"].update(epochs=20, eval_steps=20)
    project = scratch_project(tmp_path / "project", params)
    env = stage_env(tmp_path)
    init_dvc_repo(project, env)
    first = run(["dvc", "repro"], project, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    teacher = json.loads((project / "artifacts/metrics/teacher.json").read_text())
    assert teacher["task"] == "squad" and {"exact_match", "f1"} <= set(teacher)
    prune = json.loads((project / "artifacts/metrics/prune.json").read_text())
    assert prune["macs_ratio_real_lengths"] <= prune["target_macs"] + 0.05
    baselines = json.loads((project / "artifacts/metrics/baselines.json").read_text())
    assert baselines["metric"] == "f1" and baselines["truncation"] is None
    quantize = json.loads((project / "artifacts/metrics/quantize.json").read_text())
    assert set(quantize["top"]["int8"]) == {"exact_match", "f1"}
    benchmark = json.loads((project / "artifacts/metrics/benchmark.json").read_text())
    assert benchmark["latency"]["top-int8-eager"]["padded"]["batch_4"]["median_ms"] > 0
    assert not any(model.endswith(("-ort", "-openvino")) for model in benchmark["latency"])
    assert all("QA task" in peer["skipped"] for peer in benchmark["peers"].values())
    assert all("QA task" in build["skipped"] for build in benchmark["top_ort"].values())
    assert (project / "artifacts/onnx/SKIPPED").is_file()
    assert "skipped" in json.loads((project / "artifacts/metrics/flex.json").read_text())
    assert "skipped" in json.loads((project / "artifacts/metrics/flex_benchmark.json").read_text())
