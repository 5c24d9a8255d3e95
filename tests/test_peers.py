"""The benchmark's peers (the dense model in ONNX Runtime and OpenVINO): they compute what the PyTorch model
computes, INT8 keeps most of its predictions, the benchmark times and scores them, and a failed build is one line."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from transformers import BertConfig

import top.peers
from pipeline import run_stage
from pipeline.benchmark import INT8_PEER_SKIP, benchmark_models
from top.bench import SPEEDUP_KEYS
from top.errors import ModelBuildError
from top.peers import PEERS, build_peers, evaluate_peer, onnx_file
from top.pruning.model import TokenPruningBertForSequenceClassification, configure_pruning, pruning_model_class

from .conftest import REPO_ROOT

WORDS = ["cats", "purr", "softly", "dogs", "bark", "loudly", "the", "red", "house", "fresh", "bread", "birds", "sing"]


def toy_texts(count: int, seed: int) -> list[str]:
    """Sentences of 1 to 30 words: real batches mix short and long rows, so most rows are padded."""
    generator = np.random.default_rng(seed)
    return [" ".join(generator.choice(WORDS, size=generator.integers(1, 31))) for _ in range(count)]


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    from top.backbone import load_tokenizer

    return load_tokenizer(str(tiny_bert_dir))


@pytest.fixture(scope="module")
def peers(tiny_bert_dir, tokenizer, tmp_path_factory) -> dict[str, Any]:
    texts = toy_texts(16, seed=1)
    calibration = [dict(tokenizer(texts[start : start + 8], padding=True, return_tensors="pt")) for start in (0, 8)]
    return build_peers(PEERS, tiny_bert_dir, tmp_path_factory.mktemp("peers"), 1, lambda: calibration)


@pytest.fixture(scope="module")
def eager(tiny_bert_dir):
    """The benchmark's dense-fp32-eager model."""
    return pruning_model_class(tiny_bert_dir).from_pretrained(str(tiny_bert_dir)).eval()


def test_fp32_peers_compute_the_pytorch_logits(peers, eager, tokenizer):
    """Batch 1 unpadded, a padded batch, and a row longer than the export example: the axes are dynamic."""
    batches = [
        tokenizer(["a dog"], return_tensors="pt"),
        tokenizer(toy_texts(5, seed=2), ["many birds"] * 5, padding=True, return_tensors="pt"),
        tokenizer([" ".join(["cats"] * 60)], return_tensors="pt"),
    ]
    for batch in map(dict, batches):
        with torch.no_grad():
            expected = eager(**batch).logits
        for name in ("ort-fp32", "openvino-fp32"):
            torch.testing.assert_close(peers[name](**batch).logits, expected, atol=1e-4, rtol=1e-3, msg=name)


def test_int8_peers_keep_most_predictions(peers, eager, tokenizer):
    batch = dict(tokenizer(toy_texts(48, seed=3), padding=True, return_tensors="pt"))
    with torch.no_grad():
        expected = eager(**batch).logits.argmax(-1)
    for name in ("ort-int8", "openvino-int8"):
        agreement = (peers[name](**batch).logits.argmax(-1) == expected).float().mean().item()
        assert agreement >= 0.9, f"{name} agrees with FP32 on {agreement:.0%} of the toy set"


def test_peer_dev_metric_is_the_task_metric_of_its_logits(toy_top, peers, eager):
    """Scored on a prepared task's dev split, the FP32 peer gets what the PyTorch model gets the same way."""
    _, spec, splits, tokenizer, _ = toy_top
    metrics, predictions = evaluate_peer(peers["ort-fp32"], spec, splits["eval"], tokenizer, batch_size=8)
    assert set(metrics) == set(spec.metrics) and all(0 <= value <= 1 for value in metrics.values())
    assert predictions.shape == (len(splits["eval"]),)
    eager_metrics, eager_predictions = evaluate_peer(eager, spec, splits["eval"], tokenizer, batch_size=8)
    assert metrics == pytest.approx(eager_metrics) and (predictions == eager_predictions).all()


def test_scoring_gives_memory_back_and_leaves_timed_calls_as_they_were(toy_top, peers):
    """Scoring runs return their working memory (ONNX Runtime arena shrinkage, OpenVINO's buffer release) with
    unchanged predictions; afterwards the calls the benchmark times run without the shrinkage again."""
    _, spec, splits, tokenizer, _ = toy_top
    batch = dict(tokenizer(toy_texts(8, seed=5), padding=True, return_tensors="pt"))
    for name in ("ort-fp32", "openvino-fp32"):
        before = peers[name](**batch).logits
        with peers[name].returning_memory():
            torch.testing.assert_close(peers[name](**batch).logits, before, msg=name)
        torch.testing.assert_close(peers[name](**batch).logits, before, msg=name)
    evaluate_peer(peers["ort-int8"], spec, splits["eval"], tokenizer, batch_size=8)
    assert peers["ort-int8"].run_options is None


def test_a_failed_export_is_one_line_naming_the_peer(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    def explode(*_: Any) -> None:
        raise RuntimeError("exporter failed\n  on a node")

    monkeypatch.setattr(top.peers, "export_onnx", explode)
    with pytest.raises(ModelBuildError) as raised:
        build_peers(["ort-int8"], tiny_bert_dir, tmp_path, 1, list)
    assert str(raised.value) == "benchmark dense-int8-ort: ONNX export failed: RuntimeError: exporter failed on a node"

    # Through the stage entry point: one line on stderr and exit code 2, no traceback.
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        run_stage("benchmark", lambda params: build_peers(params.benchmark.peers, tiny_bert_dir, tmp_path, 1, list))
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "error: stage benchmark: benchmark dense-fp32-ort: ONNX export failed: RuntimeError: exporter failed on a node"
    ]


def test_a_missing_runtime_is_one_line_naming_the_package(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(top.peers, "export_onnx", lambda *_: None)
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(ModelBuildError, match=r"^benchmark dense-fp32-openvino: openvino .*is not installed"):
        build_peers(["openvino-fp32"], tiny_bert_dir, tmp_path, 1, list)
    with pytest.raises(ModelBuildError, match="unknown benchmark peer 'tvm-fp32'"):
        build_peers(["tvm-fp32"], tiny_bert_dir, tmp_path, 1, list)


def test_benchmark_quick_times_and_scores_the_peers(toy_top, tmp_path):
    """The stage's job on a toy task (no INT8 stage run: the INT8 peers say so): every peer and the ToP model in
    ONNX Runtime are timed in the same rounds and scored on dev, and every row has both speed-ups."""
    params, spec, _, _, work = toy_top
    teacher = work / "teacher"
    config = BertConfig.from_pretrained(teacher)
    configure_pruning(config, [1], [0.5])
    TokenPruningBertForSequenceClassification.from_pretrained(str(teacher), config=config).save_pretrained(work / "top")
    fp32 = {"teacher": teacher, "top": work / "top"}
    prune = {"f1": 0.5, "accuracy": 0.5, "macs_ratio_real_lengths": 1.0, "macs_ratio_padded_max_length": 1.0}
    prune["teacher"] = dict(prune)
    result = benchmark_models(
        work / "prepared",
        fp32,
        work / "int8",
        {"prune": prune, "quantize": {"enabled": False}},
        params.benchmark,
        tmp_path / "benchmark.json",
        tmp_path / "latency.csv",
        tmp_path / "benchmark.png",
        quick=True,
        quantize=params.quantize,
        peer_dir=tmp_path / "peers",
        onnx_dir=tmp_path / "onnx",
    )
    assert set(result["latency"]) == {
        *("dense-fp32-hf-eager", "dense-fp32-eager", "top-fp32-eager"),
        *("dense-fp32-ort", "dense-fp32-openvino", "top-fp32-ort"),
    }
    assert result["peers"]["ort-int8"] == result["peers"]["openvino-int8"] == {"skipped": INT8_PEER_SKIP}
    assert result["top_ort"]["ort-int8"] == {"skipped": INT8_PEER_SKIP}
    assert result["top_ort"]["ort-fp32"]["model"] == "top-fp32-ort"
    assert [path.name for path in (tmp_path / "onnx").iterdir()] == [onnx_file("top", "fp32")]
    own = result["summary"]["top-fp32-ort/dynamic/batch_1"]
    assert own["speedup_vs_dense_fp32_same_runtime"] > 0 and "same_runtime_speedup_over_macs_reduction" in own
    hugging_face = result["latency"]["dense-fp32-hf-eager"]["dynamic"]["batch_1"]["median_ms"]
    top_ort = result["latency"]["top-fp32-ort"]["dynamic"]["batch_1"]["median_ms"]
    assert own["speedup_vs_hugging_face_fp32"] == pytest.approx(hugging_face / top_ort, abs=1e-3)
    assert result["dev_metric"]["dense-fp32-hf-eager"] == result["dev_metric"]["dense-fp32-eager"]
    ort = result["peers"]["ort-fp32"]
    assert ort["model"] == "dense-fp32-ort" and ort["dev_examples"] == result["settings"]["examples"] == 4
    assert result["dev_metric"]["dense-fp32-ort"] == ort["dev"][spec.primary_metric]
    cell = result["latency"]["top-fp32-eager"]["dynamic"]["batch_2"]
    assert set(SPEEDUP_KEYS) <= set(cell) and cell["speedup_vs_fastest_dense"] > 0
    assert all(entry["fastest_dense"].startswith("dense-") for entry in result["summary"].values())
    header = (tmp_path / "latency.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert {"dense-fp32-ort", "dense-int8-ort", "dense-fp32-openvino", "dense-int8-openvino"} <= set(header)
    assert json.loads((tmp_path / "benchmark.json").read_text())["peers"] == result["peers"]
    assert (tmp_path / "peers" / onnx_file("dense", "fp32")).is_file()


def test_dvc_plot_lists_every_variant():
    plots = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
    from pipeline.benchmark import ALL_VARIANTS

    padded = next(plot for plot in plots if "padded inputs" in next(iter(plot)))
    (columns,) = next(iter(padded.values()))["y"].values()
    assert list(columns) == list(ALL_VARIANTS)
